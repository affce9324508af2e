"""Benchmarks: each module prints its figures with the database, N and the machine's core count."""
