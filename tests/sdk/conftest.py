"""A real `posture serve --demo` on a free loopback port, one per test, on a temporary data dir."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def posture_bin() -> str:
    return os.environ.get("POSTURE_BIN") or str(ROOT / "target" / "debug" / "posture")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data: Path):
        self.data = data
        self.log = open(data.parent / "serve.log", "w")
        # The port is picked free just before; if another process took it meanwhile, serve
        # exits at once and we try another.
        for _ in range(5):
            self.port = free_port()
            self.endpoint = f"127.0.0.1:{self.port}"
            self.proc = subprocess.Popen(
                [posture_bin(), "serve", "--demo", "--data", str(data), "--listen", self.endpoint],
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_healthy():
                break
        else:
            raise RuntimeError(f"posture serve did not start; see {self.log.name}")
        self.credentials = json.loads((data / "credentials.json").read_text())

    def _wait_healthy(self) -> bool:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.endpoint}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        raise RuntimeError(f"posture serve did not answer /healthz; see {self.log.name}")

    def fleet_file(self, instance_id: str, rel: str) -> Path:
        return self.data / "fleet" / instance_id / rel

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data")
    yield s
    s.stop()
