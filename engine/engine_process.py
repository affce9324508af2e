"""The console's engine in a process of its own: the board and the engine each get a core (and a GIL).

An engine paging through a burst works the interpreter hard; in the console's process it shared one
interpreter lock with the board, so a busy engine slowed the window and the window slowed the pages. The
console now starts `watchkeeper engine --control` as a child process and talks to it over the child's
standard input, one line per message:

    start {json}        the first line: the console's settings and its engine node id (the engine's
                        heartbeat is the console's, so the console knows the engine as its own)
    settings {json}     the console's settings, after every change saved in Settings
    wake <pass>         work for a pass was committed (an acknowledgement wakes dispatch, say)
    stop                stop the passes and exit

End of input means the console is gone — quit, crashed or killed — and the child stops its passes too: a
console never leaves an orphan engine paging on its behalf, as the embedded engine never outlived it.
On SQLite other processes on the same file also wake the child through engine.wakeup; on PostgreSQL,
through NOTIFY.

`engine_process = "console"` in the settings keeps the engine in the console's own process, as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from engine.context import AppContext
from engine.settings import Settings

log = logging.getLogger(__name__)

# How long the console waits for its engine to finish the passes in flight when it quits.
STOP_TIMEOUT_SECONDS = 30.0


def settings_line(settings: Settings) -> str:
    data = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "source"}
    return "settings " + json.dumps(data, default=str) + "\n"


def settings_from_line(line: str, base: Settings) -> Settings:
    """The settings a `settings {json}` line carries, over `base` (a field it does not name stays)."""
    data = json.loads(line.removeprefix("settings ").strip())
    known = {f.name for f in dataclasses.fields(Settings)}
    return dataclasses.replace(base, **{k: v for k, v in data.items() if k in known and k != "source"})


def start_line(settings: Settings, node_id: str) -> str:
    return (
        "start "
        + json.dumps({"node_id": node_id, "settings": json.loads(settings_line(settings)[9:])})
        + "\n"
    )


def read_start(control: TextIO, base: Settings) -> tuple[Settings, str]:
    """The first line of `--control`: (the console's settings over `base`, the console's node id)."""
    line = control.readline()
    if not line.startswith("start "):
        raise SystemExit("watchkeeper engine --control: the first line must be `start {json}`")
    data = json.loads(line[6:])
    settings = settings_from_line("settings " + json.dumps(data["settings"]), base)
    return settings, str(data["node_id"])


# ------------------------------------------------------------------------------------------------------
# The child: `watchkeeper engine`
# ------------------------------------------------------------------------------------------------------


def run_engine(ctx: AppContext, control: TextIO | None, node_id: str | None = None) -> int:
    """Run every pass until `stop`, end of `control`, or (without control) SIGINT/SIGTERM. `node_id`: the
    console's, when this is its engine."""
    from engine.runner import EngineRunner

    if node_id:
        ctx.node_id = node_id
    runner = EngineRunner(ctx, mode="console" if control is not None else "service")
    runner.start()
    log.info("engine passes running in process %d", os.getpid())
    try:
        if control is None:
            _wait_for_signal()
        else:
            _follow(ctx, runner, control)
    finally:
        runner.stop(timeout=STOP_TIMEOUT_SECONDS)
    return 0


def _follow(ctx: AppContext, runner: Any, control: TextIO) -> None:
    for line in control:
        verb, _, rest = line.strip().partition(" ")
        if verb == "wake":
            runner.wake(rest)
        elif verb == "settings":
            _apply_settings(ctx, settings_from_line(line, ctx.settings))
        elif verb == "stop":
            return
        elif verb:
            log.warning("engine control: unknown line %r ignored", verb)


def _apply_settings(ctx: AppContext, new: Settings) -> None:
    """What the console's Settings dialog changed, applied as it is in the console's own process: the
    fields in place (the passes read them), the channels' senders built again (new accounts, secrets)."""
    for f in dataclasses.fields(Settings):
        if f.name not in ("source", "db"):
            setattr(ctx.settings, f.name, getattr(new, f.name))
    try:
        from engine.channels import build_senders, install_senders

        install_senders(ctx, build_senders(ctx.settings, clock=ctx.clock))
    except ImportError:
        pass
    except Exception:
        log.exception("the channels could not be set up again with the new settings")


def _wait_for_signal() -> None:
    import signal

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


# ------------------------------------------------------------------------------------------------------
# The console's end
# ------------------------------------------------------------------------------------------------------


def child_command() -> list[str]:
    """How to start `watchkeeper engine --control` from this program: the packaged binary itself, or this
    Python with the checkout's main.py."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "engine", "--control"]
    main = Path(__file__).resolve().parents[1] / "main.py"
    return [sys.executable, str(main), "engine", "--control"]


class EngineProcess:
    """The console's handle on its engine process; `running` is what the status bar shows."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._previous_wake = ctx.wake
        self._previous_settings_changed = ctx.settings_changed

    def start(self) -> None:
        # The child logs where the console does (stderr, the log file); its output is not read.
        self.proc = subprocess.Popen(child_command(), stdin=subprocess.PIPE, text=True, close_fds=True)
        assert self.proc.stdin is not None
        self._write(start_line(self.ctx.settings, self.ctx.node_id))
        self.ctx.wake = self.wake
        self.ctx.settings_changed = self.settings_changed
        log.info("engine started in process %d", self.proc.pid)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _write(self, line: str) -> None:
        with self._lock:
            if self.proc is None or self.proc.stdin is None:
                return
            try:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):  # the child is gone: `running` says so
                log.debug("engine process not reachable", exc_info=True)

    def wake(self, pass_name: str) -> None:
        self._write(f"wake {pass_name}\n")

    def settings_changed(self) -> None:
        self._write(settings_line(self.ctx.settings))

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        self.ctx.wake = self._previous_wake
        self.ctx.settings_changed = self._previous_settings_changed
        proc = self.proc
        if proc is None:
            return
        self._write("stop\n")
        with self._lock, contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        deadline = time.monotonic() + timeout + 5
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            log.warning("the engine process %d did not stop in time; killing it", proc.pid)
            proc.kill()
            proc.wait(5)
        elif proc.returncode:
            log.warning("the engine process %d stopped with exit code %s", proc.pid, proc.returncode)
