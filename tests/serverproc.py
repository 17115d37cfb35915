"""A real `paperlens serve` in a subprocess on 127.0.0.1, for tests and benchmarks that kill it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """Start, wait for /health, kill -9. The log goes to a file so a failed start can be read."""

    def __init__(self, index: Path, log: Path, env: dict[str, str] | None = None, start_timeout: float = 180.0,
                 create: bool = False, nice: int = 0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - held while the server runs, closed once it is dead
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "paperlens.cli", "serve", "--index", str(index), "--port", str(self.port)]
            + (["--create"] if create else []),
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,  # every thread of the server inherits it
        )
        self._wait_ready(start_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout}s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> int:
        """SIGKILL, as a power cut would: no shutdown handlers run."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait(timeout=30)
        self._log.close()
        return code

    def wait_dead(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code
