"""`watchkeeper serve` nodes for the end-to-end tests and the soak benchmark: each in a session of its own
(a hard kill takes the HTTP parent and its engine child together), sending SMS through a fake Twilio server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.fakes.twilio_server import FakeTwilio

ROOT = Path(__file__).resolve().parents[2]


class Node:
    """One `watchkeeper serve` process on an ephemeral port, sending SMS through the fake Twilio server."""

    def __init__(
        self,
        name: str,
        db_url: str,
        log_dir: Path,
        twilio: FakeTwilio,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        env.update(
            {
                "WATCHKEEPER_DB": db_url,
                "WATCHKEEPER_HTTP_PORT": "0",
                "WATCHKEEPER_CONFIG": str(log_dir / "none.toml"),
                "WATCHKEEPER_LOG_LEVEL": "WARNING",
                "WATCHKEEPER_TWILIO_ACCOUNT_SID": twilio.account_sid,
                "WATCHKEEPER_TWILIO_BASE_URL": twilio.base_url,
                "WATCHKEEPER_TWILIO_SMS_FROM": "+27870000001",
                "WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN": twilio.auth_token,
                # Full speed: the test is about exactly-once, not provider limits.
                "WATCHKEEPER_RATE_PER_CHANNEL_PER_SECOND": "sms=100000",
                "WATCHKEEPER_RATE_PER_RECIPIENT_PER_MINUTE": "10000000",
                "WATCHKEEPER_SEND_DEADLINE_SECONDS": "10",
                "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra_env or {})
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("w")
        # A session of its own, so a hard kill takes the whole node: the HTTP parent and its engine child.
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "serve"],
            cwd=str(ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Logging at WARNING hides the "listening" line: find the port from the process's listening socket.
        self.base_url = ""

    def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            port = listening_port(self.proc.pid)
            if port:
                self.base_url = f"http://127.0.0.1:{port}"
                try:
                    with urllib.request.urlopen(self.base_url + "/healthz", timeout=5):
                        return
                except urllib.error.HTTPError:
                    return  # answering (503 while the first passes run is fine)
                except OSError:
                    pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not listen within {timeout} s:\n{self.log_path.read_text()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.log.close()
        return code

    def kill_hard(self) -> None:
        """SIGKILL to every process of the node at once: no engine gets to finish anything."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()


def listening_port(pid: int) -> int | None:
    """The TCP port a process listens on, from /proc (Linux): its socket inodes matched in /proc/net/tcp."""
    try:
        inodes = {
            os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
        }
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes and parts[1].startswith("0100007F:"):
                return int(parts[1].split(":")[1], 16)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None
