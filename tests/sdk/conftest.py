"""A real `posture serve --demo` on a free loopback port, one per test, on a temporary data dir."""
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
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


def issue_certificate(tls_dir: Path, *names: str) -> dict:
    """`posture tls cert`: the CA of tls_dir (made once) and a new server certificate."""
    args = [posture_bin(), "tls", "cert", "--dir", str(tls_dir)]
    for n in names:
        args += ["--name", n]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


class Server:
    def __init__(self, data: Path, demo=True, args=(), env=None, log_name="serve.log", tls_dir: Path = None):
        self.data = data
        data.parent.mkdir(parents=True, exist_ok=True)
        # HTTPS with a certificate from tls_dir's CA (made there when missing).
        self.ca = None
        if tls_dir is not None:
            if not (tls_dir / "server.pem").exists():
                issue_certificate(tls_dir)
            self.ca = tls_dir / "ca.pem"
            args = [*args, "--tls-cert", str(tls_dir / "server.pem"), "--tls-key", str(tls_dir / "server.key"),
                    "--tls-ca", str(self.ca)]
        self.log = open(data.parent / log_name, "w")
        # The port is picked free just before; if another process took it meanwhile, serve
        # exits at once and we try another.
        for _ in range(5):
            self.port = free_port()
            self.endpoint = f"127.0.0.1:{self.port}"
            self.proc = subprocess.Popen(
                [posture_bin(), "serve", *(["--demo"] if demo else []), "--data", str(data), "--listen", self.endpoint, *args],
                env={**os.environ, **(env or {})},
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
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1, context=self.ssl_context()) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        raise RuntimeError(f"posture serve did not answer /healthz; see {self.log.name}")

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://{self.endpoint}"

    def ssl_context(self, ca=None):
        """A client context trusting `ca` (default: the server's CA); None for plain HTTP."""
        ca = ca or self.ca
        return ssl.create_default_context(cafile=str(ca)) if ca else None

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


class Moto:
    """A real moto_server (from PyPI, in this venv) on a free loopback port. Authentication is
    switched on once an IAM user with an allow-all policy exists, so every AWS call (posture's
    and the tests' own) is signed with that user's real key and checked."""

    def __init__(self, workdir: Path):
        self.log = open(workdir / "moto.log", "w")
        # moto_server, with the fix of moto_server.py (signed GET requests).
        self.cmd = [sys.executable, str(Path(__file__).with_name("moto_server.py"))]
        self.start()

    def start(self):
        for _ in range(5):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            # AWS's managed policies (AWSSupportAccess, AWSCloudShellFullAccess) exist only when
            # moto loads them.
            self.proc = subprocess.Popen([*self.cmd, "-H", "127.0.0.1", "-p", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"})
            deadline = time.time() + 30
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                        return
                except OSError:
                    time.sleep(0.05)
        raise RuntimeError(f"moto_server did not start; see {self.log.name}")

    def _post(self, path, body=b""):
        req = urllib.request.Request(f"{self.url}{path}", data=body, method="POST", headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def reset(self):
        """Wipes every resource and returns a fresh (key id, secret) of an allow-all IAM user."""
        self._post("/moto-api/reset-auth", b"inf")
        self._post("/moto-api/reset")
        iam = self.client("iam", "anything", "anything")
        iam.create_user(UserName="posture")
        # Inline, so that the account has no attached customer policy allowing *:* (CIS 1.16)
        # unless a test attaches one.
        iam.put_user_policy(UserName="posture", PolicyName="allow-all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="posture")["AccessKey"]
        self._post("/moto-api/reset-auth", b"0")
        self.key = (key["AccessKeyId"], key["SecretAccessKey"])
        return self.key

    def client(self, service, key_id=None, secret=None, region="us-east-1"):
        import boto3
        key_id, secret = (key_id, secret) if key_id else self.key
        return boto3.client(service, endpoint_url=self.url, region_name=region,
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    m = Moto(tmp_path_factory.mktemp("moto"))
    yield m
    m.stop()
    m.log.close()


@pytest.fixture
def moto(moto_server):
    moto_server.reset()
    return moto_server


@pytest.fixture
def aws_server(tmp_path, moto):
    """posture serve (no demo fleet) pointed at moto; short leases so retries are quick."""
    s = Server(tmp_path / "data", demo=False, args=["--lease-ms", "1500"], env={"POSTURE_AWS_ENDPOINT_URL": moto.url})
    yield s
    s.stop()
