"""Peer escalation engines for bench/bench_busy.py: each driven in a subprocess with the peers' venv."""
