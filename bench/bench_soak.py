"""The soak at full size: Events API traffic over HTTP into several `serve` nodes at a fixed rate, with
duplicates, resolves a few seconds after their triggers and bad events; whole nodes killed hard at random and
replaced; on PostgreSQL the server restarted mid-run for 20 s. Prints every count that must be zero and how long
the nodes took to be healthy again.

    python -m bench.bench_soak [--backend sqlite|postgresql|both] [--alerts 4000] [--rate 50] [--kills 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e.soak import SoakConfig, run_soak


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_soak")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--alerts", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--kills", type=int, default=7)
    parser.add_argument("--outage", type=float, default=20.0, help="PostgreSQL down this many seconds")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    failed = False
    for backend in backends:
        config = SoakConfig(
            backend=backend,
            nodes=3 if backend == "postgresql" else 2,
            alerts=args.alerts,
            rate=args.rate,
            kills=args.kills if backend == "postgresql" else args.kills + 1,
            db_restart_seconds=args.outage if backend == "postgresql" else 0.0,
            settle_seconds=600.0,
        )
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="watchkeeper-soak-") as work:
            report = run_soak(config, Path(work))
        for line in report.lines():
            print(line, flush=True)
        print(f"  wall time {time.monotonic() - started:.0f} s", flush=True)
        for error in report.errors:
            print(f"  error: {error}", flush=True)
        failed = failed or bool(report.failures()) or bool(report.errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
