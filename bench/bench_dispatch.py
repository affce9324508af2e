"""Dispatch throughput and latency: outbox rows to the fake Twilio provider through the real `twilio` client.

Two runs per database:

* paced — a producer writes outbox rows at --rate per second (default 1,000) for --seconds while the engine's
  dispatch pass runs back to back (as the scheduler does when woken by new work); 1 % of the rows are voice
  calls to a provider that takes --slow seconds to answer, to show that a slow channel does not stall the
  others. Latency is outbox commit → provider's answer received (p50/p99), per channel.
* burst — N rows already waiting; how fast one engine drains them.

The fake Twilio server runs in its own process (it is the provider, not part of the engine), on the same two
cores. Figures: database, N, cores, messages/s, latency percentiles.

    python -m bench.bench_dispatch [--db sqlite|postgresql|both] [--rate 1000] [--seconds 10] [--n 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, insert, make_url, text

from bench.bench_intake import proc_cpu_seconds
from engine import dispatch
from engine.channels import OutgoingMessage, Sender, SendResult, StatusResult, build_senders, install_senders
from engine.clock import SystemClock
from engine.context import AppContext
from engine.db import make_engine
from engine.models import Base, OutboxMessage
from engine.settings import Settings

PG_URL = os.environ.get("WATCHKEEPER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _serve_fake_twilio(port_queue: Any, slow_voice: float, token: str) -> None:
    from tests.fakes.twilio_server import FakeTwilio

    fake = FakeTwilio(auth_token=token)
    fake.delay["voice"] = slow_voice
    fake.start()
    port_queue.put((fake.base_url, os.getpid()))
    threading.Event().wait()


class CpuMeter:
    """CPU seconds of the engine (this process minus the producer thread) and of the fake provider's process."""

    def __init__(self, provider_pid: int) -> None:
        self.provider_pid = provider_pid
        self.producer = 0.0
        self._start = self._now()

    def _now(self) -> tuple[float, float]:
        return time.process_time(), sum(proc_cpu_seconds(self.provider_pid))

    def producer_time(self, seconds: float) -> None:
        self.producer += seconds

    def read(self) -> dict[str, float]:
        process, provider = self._now()
        return {
            "engine": process - self._start[0] - self.producer,
            "producer": self.producer,
            "provider": provider - self._start[1],
        }


class Timed:
    """Wraps a real sender and notes when the provider's answer arrived (monotonic), by idempotency key."""

    def __init__(self, inner: Sender, answered: dict[str, float]) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.simulated = inner.simulated
        self.answered = answered

    def send(self, message: OutgoingMessage) -> SendResult:
        result = self.inner.send(message)
        self.answered[message.idempotency_key] = time.monotonic()
        return result

    def fetch_status(self, provider_id: str) -> StatusResult:
        return self.inner.fetch_status(provider_id)


def _context(db_url: str, base_url: str, token: str) -> tuple[AppContext, dict[str, float]]:
    os.environ["WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN"] = token
    settings = Settings(
        db=db_url,
        twilio_account_sid="AC" + "0" * 32,
        twilio_base_url=base_url,
        twilio_sms_from="+27870000001",
        twilio_whatsapp_from="+27870000002",
        twilio_voice_from="+27870000003",
        twilio_timeout_seconds=10.0,
        rate_per_channel_per_second={"sms": 5000.0, "whatsapp": 5000.0, "voice": 100.0},
        rate_per_recipient_per_minute=600.0,
        send_deadline_seconds=60.0,
    )
    ctx = AppContext.create(settings, clock=SystemClock(), mode="bench")
    answered: dict[str, float] = {}
    senders = build_senders(settings, clock=ctx.clock)
    install_senders(ctx, {name: Timed(s, answered) for name, s in senders.items()})
    return ctx, answered


def _rows(start: int, count: int, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for seq in range(start, start + count):
        channel = "voice" if seq % 100 == 99 else ("whatsapp" if seq % 4 == 0 else "sms")
        rows.append(
            {
                "idempotency_key": f"bench:{seq}",
                "kind": "test",
                "channel": channel,
                "address": f"+2782{seq % 10_000_000:07d}",
                "body": f"Bench message {seq}: pump station offline. Reply 1 to acknowledge.",
                "status": "pending",
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


def _engine_loop(ctx: AppContext, stop: threading.Event, stats: dict[str, int]) -> None:
    while not stop.is_set():
        result = dispatch.dispatch_pass(ctx, batch_size=500, max_batches=4, wait_seconds=0.05)
        stats["passes"] += 1
        stats["sent"] += int(result["sent"])
        if result["claimed"] == 0 and result["sent"] == 0:
            time.sleep(0.005)


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_paced(
    db_url: str, base_url: str, token: str, rate: float, seconds: float, provider_pid: int
) -> dict[str, Any]:
    ctx, answered = _context(db_url, base_url, token)
    cpu = CpuMeter(provider_pid)
    committed: dict[str, float] = {}
    stop = threading.Event()
    stats = {"passes": 0, "sent": 0}
    engine_thread = threading.Thread(target=_engine_loop, args=(ctx, stop, stats), daemon=True)
    engine_thread.start()
    total = int(rate * seconds)
    tick = 0.02
    per_tick = max(1, int(rate * tick))
    started = time.monotonic()
    seq = 0
    while seq < total:
        due = started + (seq / rate)
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        count = min(per_tick, total - seq)
        producing = time.thread_time()
        rows = _rows(seq, count, datetime.now(UTC))
        with ctx.db.begin() as conn:
            conn.execute(insert(OutboxMessage), rows)
        cpu.producer_time(time.thread_time() - producing)
        at = time.monotonic()
        for r in rows:
            committed[r["idempotency_key"]] = at
        seq += count
        ctx.wake("dispatch")
    produced_at = time.monotonic()
    fast_keys = [k for k in committed if int(k.split(":")[1]) % 100 != 99]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(k not in answered for k in fast_keys):
        time.sleep(0.05)
    fast_done = max((answered[k] for k in fast_keys if k in answered), default=time.monotonic())
    voice_keys = [k for k in committed if int(k.split(":")[1]) % 100 == 99]
    voice_answered_when_fast_done = sum(1 for k in voice_keys if k in answered and answered[k] <= fast_done)
    used = cpu.read()
    stop.set()
    engine_thread.join()
    dispatch.shutdown(ctx)
    latencies = {
        ch: [answered[k] - committed[k] for k in keys if k in answered]
        for ch, keys in (("sms+whatsapp", fast_keys), ("voice (slow)", voice_keys))
    }
    ctx.db.dispose()
    return {
        "n": total,
        "offered_rate": rate,
        "produce_seconds": produced_at - started,
        "fast_messages": len(fast_keys),
        "fast_throughput": len(fast_keys) / max(1e-9, fast_done - started),
        "latencies": latencies,
        "voice_total": len(voice_keys),
        "voice_done_by_then": voice_answered_when_fast_done,
        "passes": stats["passes"],
        "cpu": used,
        "sent_by_then": sum(1 for k in committed if k in answered and answered[k] <= fast_done),
    }


def run_burst(db_url: str, base_url: str, token: str, n: int, provider_pid: int) -> dict[str, Any]:
    ctx, _answered = _context(db_url, base_url, token)
    now = datetime.now(UTC)
    with ctx.db.begin() as conn:
        for start in range(0, n, 1000):
            rows = [
                r for r in _rows(10_000_000 + start, min(1000, n - start), now) if r["channel"] != "voice"
            ]
            conn.execute(insert(OutboxMessage), rows)
    expected = sum(1 for s in range(n) if (10_000_000 + s) % 100 != 99)
    cpu = CpuMeter(provider_pid)
    started = time.monotonic()
    sent = 0
    while sent < expected and time.monotonic() - started < 300:
        sent += int(dispatch.dispatch_pass(ctx, batch_size=500, max_batches=4, wait_seconds=0.05)["sent"])
    while sent < expected and time.monotonic() - started < 300:
        sent += int(dispatch.dispatch_pass(ctx, wait_seconds=1.0)["sent"])
    seconds = time.monotonic() - started
    used = cpu.read()
    dispatch.shutdown(ctx)
    ctx.db.dispose()
    return {"n": expected, "seconds": seconds, "throughput": expected / seconds, "cpu": used}


def _cpu_line(cpu: dict[str, float], sent: int) -> str:
    engine = cpu["engine"]
    per = sent / engine if engine > 0 else float("nan")
    return (
        f"cpu: engine {engine:.1f} s = {per:,.0f} msg per engine CPU-second; fake provider {cpu['provider']:.1f} s; "
        f"bench producer {cpu['producer']:.1f} s (same 2 cores)"
    )


def _databases(which: str) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    if which in ("sqlite", "both"):
        tmp = tempfile.mkdtemp(prefix="wk-bench-")
        out.append(("sqlite", f"sqlite:///{tmp}/bench.db", None))
    if which in ("postgresql", "both"):
        admin = make_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_size=1)
        name = f"wk_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        out.append(("postgresql", url, (admin, name)))
    return out


def _drop(cleanup: Any) -> None:
    if cleanup is None:
        return
    admin, name = cleanup
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _schema(url: str, fresh: bool = False) -> None:
    engine: Engine = make_engine(url)
    if fresh:
        Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="both", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--slow", type=float, default=2.0, help="seconds the slow (voice) provider takes")
    args = parser.parse_args(argv)

    token = "bench-token-" + uuid.uuid4().hex[:8]
    ports: Any = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve_fake_twilio, args=(ports, args.slow, token), daemon=True
    )
    server.start()
    base_url, provider_pid = ports.get(timeout=30)
    try:
        for label, url, cleanup in _databases(args.db):
            try:
                _schema(url)
                paced = run_paced(url, base_url, token, args.rate, args.seconds, provider_pid)
                _schema(url, fresh=True)  # the burst starts from an empty outbox
                burst = run_burst(url, base_url, token, args.n, provider_pid)
            finally:
                _drop(cleanup)
            fast = paced["latencies"]["sms+whatsapp"]
            slow = paced["latencies"]["voice (slow)"]
            print(
                f"database: {label}   cores: {os.cpu_count()}   provider: fake Twilio over HTTP (own process)"
            )
            print(
                f"  paced: N={paced['n']} offered {paced['offered_rate']:.0f}/s for {paced['produce_seconds']:.1f} s; "
                f"sms+whatsapp {paced['fast_messages']} sent at {paced['fast_throughput']:.0f} msg/s"
            )
            print(
                f"    outbox->provider latency sms+whatsapp: p50 {_percentile(fast, 50) * 1000:.0f} ms, "
                f"p99 {_percentile(fast, 99) * 1000:.0f} ms, max {max(fast, default=0) * 1000:.0f} ms "
                f"(mean {statistics.fmean(fast) * 1000 if fast else 0:.0f} ms)"
            )
            print(
                f"    slow voice channel ({args.slow:.1f} s per call): {paced['voice_done_by_then']}/{paced['voice_total']} "
                f"calls answered by the time every SMS/WhatsApp was; voice p50 {_percentile(slow, 50):.1f} s"
            )
            print("    " + _cpu_line(paced["cpu"], paced["sent_by_then"]))
            print(
                f"  burst: N={burst['n']} waiting rows drained in {burst['seconds']:.1f} s = {burst['throughput']:.0f} msg/s"
            )
            print("    " + _cpu_line(burst["cpu"], burst["n"]))
            print(f"  1-min load average at the end: {os.getloadavg()[0]:.2f}")
            sys.stdout.flush()
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main(sys.argv[1:])
