"""A minimal PEP 517 build backend, standard library only, for this test package.

It turns ``src/`` and the ``[project]`` table of ``pyproject.toml`` into a pure-Python wheel with
real ``.dist-info`` metadata (``METADATA``, ``entry_points.txt``, ``RECORD``), which is all pip
needs to install it. A published plug-in would use setuptools, hatchling or flit instead; this
one exists so that the tests build offline, in well under a second, whatever setuptools or wheel
the test environment has (``--no-build-isolation`` uses the environment's own).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip, which runs this backend, vendors tomli
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

HERE = os.path.dirname(os.path.abspath(__file__))


def get_requires_for_build_wheel(config_settings: object = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: object = None) -> list[str]:
    return []


def build_wheel(wheel_directory: str, config_settings: object = None,
                metadata_directory: object = None) -> str:
    project = _project()
    dist, version = _normalized(project["name"]), project["version"]
    info = f"{dist}-{version}.dist-info"
    files = [(arc, data) for arc, data in _sources("src")]
    files.append((f"{info}/METADATA", _metadata(project)))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: _build_backend\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    files.append((f"{info}/entry_points.txt", _entry_points(project)))
    record = [f"{arc},sha256={_digest(data)},{len(data)}" for arc, data in files]
    record.append(f"{info}/RECORD,,")
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    name = f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as whl:
        for arc, data in files:
            whl.writestr(arc, data)
    return name


def build_sdist(sdist_directory: str, config_settings: object = None) -> str:
    project = _project()
    base = f"{_normalized(project['name'])}-{project['version']}"
    members = [("pyproject.toml", _read("pyproject.toml")), ("_build_backend.py", _read("_build_backend.py"))]
    members += [(f"src/{arc}", data) for arc, data in _sources("src")]
    members.append(("PKG-INFO", _metadata(project)))
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        for arc, data in members:
            entry = tarfile.TarInfo(f"{base}/{arc}")
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    return name


def _project() -> dict:
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _read(relative: str) -> bytes:
    with open(os.path.join(HERE, relative), "rb") as f:
        return f.read()


def _sources(top: str) -> list[tuple[str, bytes]]:
    root = os.path.join(HERE, top)
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.endswith(".egg-info"))
        for name in sorted(names):
            if not name.endswith(".pyc"):
                path = os.path.join(folder, name)
                found.append((os.path.relpath(path, root).replace(os.sep, "/"), _read(path)))
    return found


def _metadata(project: dict) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}"]
    if "description" in project:
        lines.append(f"Summary: {project['description']}")
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    return ("\n".join(lines) + "\n").encode()


def _entry_points(project: dict) -> bytes:
    text = ""
    for group, points in project.get("entry-points", {}).items():
        text += f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items()) + "\n"
    return text.encode()


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
