"""Azure ML's original collector, ``azureml-monitoring`` 0.1.0a21, as a peer (``--peers v1,v2``).

It writes to Azure Blob through a bundled native library (C++ REST SDK + Azure Storage C++ SDK),
which needs, besides what Debian 12 has:

* OpenSSL 1.0: ``libssl``/``libcrypto`` 1.0.2 ship inside the ``psycopg2-binary==2.7.7`` wheel
  (downloaded, never installed) and are linked as ``libssl.so.1.0.0``/``libcrypto.so.1.0.0``;
* Debian's ``libglibmm-2.4-1v5``, ``libxml++2.6-2v5`` and ``libsigc++-2.0-0v5``, fetched with
  ``apt-get download`` and unpacked with ``dpkg-deb -x`` (nothing is installed system-wide);
* ``libffi.so.6``, pointing at the system's libffi;

all in ``.cache/bench/v1-native`` on ``LD_LIBRARY_PATH``. Azurite rejects the empty ``Content-MD5``
header it sends, so it talks to Azurite through ``Md5Proxy``, a loopback proxy that drops that
header. Its telemetry dependency (``azureml-telemetry``) is not installed (``--no-deps``), which
switches its telemetry off: it makes no outside connection. It is enabled by
``AML_MODEL_DC_STORAGE_ENABLED=true`` and ``AML_MODEL_DC_STORAGE=<connection string>``, and it
commits its block blobs only when the process shuts down: *durable* is the time from the last
``collect()`` until its process has exited, and rows are then read back from Azurite.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import peers  # noqa: E402

from faultproxy import _pump as _pipe  # noqa: E402  (one direction of a TCP relay)

V1_REQUIREMENTS = ["numpy", "pandas"]
V1_PACKAGE = "azureml-monitoring==0.1.0a21"
DEBIAN_PACKAGES = ["libglibmm-2.4-1v5", "libxml++2.6-2v5", "libsigc++-2.0-0v5"]
CONTAINER = "modeldata"
SETUP_TIMEOUT = 600.0


class Md5Proxy:
    """Loopback HTTP proxy that forwards requests unchanged except for an empty ``Content-MD5``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        self.dropped_headers = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=_pipe, args=(server, client), daemon=True).start()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                kept = [lines[0]]
                length, chunked = 0, False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    lname, value = name.strip().lower(), value.strip()
                    if lname == b"content-md5" and not value:
                        self.dropped_headers += 1
                        continue
                    if lname == b"content-length":
                        length = int(value)
                    if lname == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                    kept.append(line)
                server.sendall(b"\r\n".join(kept) + b"\r\n\r\n")
                if chunked:  # relay the rest as it comes (never seen from this client)
                    server.sendall(buf)
                    _pipe(client, server)
                    return
                while len(buf) < length:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                server.sendall(buf[:length])
                buf = buf[length:]
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()
            with contextlib.suppress(OSError):
                server.close()

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()


def _run(cmd: list[str], cwd: str | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False)
    if done.returncode != 0:
        raise peers.PeerUnavailable(f"{' '.join(cmd)} failed: {done.stderr.strip()[-1500:]}")


def native_libs(python: Path) -> Path:
    """``.cache/bench/v1-native`` with the shared libraries the peer's native library lacks."""
    home = peers.CACHE / "v1-native"
    if (home / ".complete").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        # OpenSSL 1.0.2 from the psycopg2-binary 2.7.7 wheel (a manylinux1 wheel, for CPython 3.7).
        _run(
            [str(python), "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--python-version", "37", "--platform", "manylinux1_x86_64", "psycopg2-binary==2.7.7", "-d", tmp]
        )  # fmt: skip
        (wheel,) = glob.glob(os.path.join(tmp, "psycopg2_binary-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                base = os.path.basename(name)
                if "/.libs/" not in f"/{name}" or ".so" not in base:
                    continue
                (home / base).write_bytes(z.read(name))  # with what they link (libz, krb5, ...)
                if base.startswith(("libssl", "libcrypto")):
                    link = "libssl.so.1.0.0" if base.startswith("libssl") else "libcrypto.so.1.0.0"
                    with contextlib.suppress(FileExistsError):
                        (home / link).symlink_to(base)
        if not (home / "libssl.so.1.0.0").exists():
            raise peers.PeerUnavailable("psycopg2-binary 2.7.7 wheel had no libssl/libcrypto")
        # glibmm, libxml++, libsigc++ from Debian, unpacked (not installed).
        _run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=tmp)
        unpacked = os.path.join(tmp, "root")
        for deb in glob.glob(os.path.join(tmp, "*.deb")):
            _run(["dpkg-deb", "-x", deb, unpacked])
        for lib in glob.glob(os.path.join(unpacked, "usr", "lib", "*", "*.so*")):
            target = home / os.path.basename(lib)
            if os.path.islink(lib):
                target.symlink_to(os.readlink(lib))
            else:
                shutil.copy2(lib, target)
    for libffi in ("/usr/lib/x86_64-linux-gnu/libffi.so.8", "/usr/lib/x86_64-linux-gnu/libffi.so.7"):
        if os.path.exists(libffi):
            (home / "libffi.so.6").symlink_to(libffi)
            break
    (home / ".complete").write_text("")
    return home


def native_dir(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import azureml.monitoring, os; print(os.path.dirname(azureml.monitoring.__file__))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise peers.PeerUnavailable(f"azureml-monitoring does not import: {out.stderr.strip()[-800:]}")
    return Path(out.stdout.strip()) / "tools" / "modeldatacollector" / "lib" / "native" / "Linux"


def prepare(suite: Any, azurite: Any) -> str:
    """Install the peer and its native libraries; start the proxy. Returns a status for the report."""
    if azurite is None:
        return "not run: it writes to Azure Blob and Azurite is not among the backends"
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        return "not run: needs apt-get and dpkg-deb (Debian or Ubuntu) to fetch glibmm, libxml++ and libsigc++"
    started = time.monotonic()
    try:
        python = peers.venv_python("v1", V1_REQUIREMENTS, no_deps=[V1_PACKAGE])
        libs = native_libs(python)
        native = native_dir(python)
        missing = _missing(native / "libmodeldatacollector.so", [libs, native])
        if missing:
            return "not run: its native library still lacks " + ", ".join(missing)
    except (peers.PeerUnavailable, subprocess.TimeoutExpired, OSError) as exc:
        return f"not run: set-up failed after {time.monotonic() - started:.0f} s: {exc}"
    server = azurite.info["server"]
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(server.connection_string)
    with contextlib.suppress(Exception):
        service.create_container(CONTAINER)
    proxy = Md5Proxy(server.port)
    suite.v1 = {
        "python": str(python),
        "ld_library_path": f"{libs}:{native}",
        "proxy": proxy,
        "service": service,
        "connection_string": server.connection_string.replace(f":{server.port}/", f":{proxy.port}/"),
    }
    took = time.monotonic() - started
    return (
        f"ran: installed into its own venv without its telemetry dependency (set-up {took:.0f} s), "
        "native libraries on LD_LIBRARY_PATH, writing to Azurite through a proxy that drops its empty Content-MD5"
    )


def _missing(library: Path, dirs: list[Path]) -> list[str]:
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(str(d) for d in dirs))
    out = subprocess.run(["ldd", str(library)], capture_output=True, text=True, env=env, check=False).stdout
    return sorted({line.split()[0] for line in out.splitlines() if "not found" in line})


def count_rows(service: Any, model: str) -> dict[str, int]:
    """Data rows in the peer's blobs for ``model``: lines that start with a number (it repeats its
    header line, and its correlated predictions are wider than their header)."""
    container = service.get_container_client(CONTAINER)
    rows = {"inputs": 0, "predictions": 0}
    for blob in container.list_blobs():
        if f"/{model}/" not in f"/{blob.name}":
            continue
        data = container.download_blob(blob.name).readall()
        designation = "inputs" if "/inputs/" in blob.name else "predictions"
        rows[designation] += sum(1 for line in data.splitlines() if _is_number(line.split(b",", 1)[0]))
    return rows


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def run(suite: Any, cell: Any, specs: list[dict], log: Path) -> list[dict]:
    """Run the cell's processes against Azurite; durable = until the processes have exited."""
    from suite import run_processes

    v1 = suite.v1
    env = peers.peer_env(
        {
            "AML_MODEL_DC_STORAGE_ENABLED": "true",
            "AML_MODEL_DC_STORAGE": v1["connection_string"],
            "LD_LIBRARY_PATH": v1["ld_library_path"],
        }
    )
    parts = run_processes(v1["python"], specs, env, log, suite.args.cell_timeout)
    exited = time.time()  # run_processes returns once every process has exited
    for part in parts:
        part["durable_s"] = exited - part["last_call_wall"]
        part["durable"] = None
    # Read until the count stops changing (Azurite may still be committing what Shutdown sent).
    rows: dict[str, int] = {}
    deadline = time.monotonic() + 10
    while True:
        time.sleep(0.5)
        now = count_rows(v1["service"], specs[0]["model"])
        if now == rows or time.monotonic() > deadline:
            break
        rows = now
    parts[0]["rows_read_back"] = sum(now.values())
    parts[0]["read_back_by_designation"] = now
    return parts


def cleanup(suite: Any) -> None:
    v1 = getattr(suite, "v1", None)
    if v1:
        v1["proxy"].stop()


if __name__ == "__main__":  # python benchmarks/peer_v1.py: set up the peer and print what is missing
    python = peers.venv_python("v1", V1_REQUIREMENTS, no_deps=[V1_PACKAGE])
    libs = native_libs(python)
    native = native_dir(python)
    print(
        json.dumps(
            {
                "python": str(python),
                "libs": str(libs),
                "missing": _missing(native / "libmodeldatacollector.so", [libs, native]),
            }
        )
    )
    sys.exit(0)
