"""The plug-in registry (``mdc_core.plugins``) and the ``mdc_backends`` / ``mdc_formats`` hooks.

Built-ins are found through entry points; a real third-party distribution (``tests/plugin_pkg``,
pip-installed once per session into a temporary folder) works end to end in a subprocess; broken,
blocked, conflicting and misspelt plug-ins and unknown names or URL schemes fail as documented.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import distribution, entry_points
from pathlib import Path
from types import SimpleNamespace

import pluggy
import pytest

from mdc_core import (
    AML_COLUMNS,
    Backend,
    BackendError,
    BackendPlugin,
    Capability,
    Format,
    FormatPlugin,
    ModelDataCollector,
    PluginConflictError,
    UnknownPluginError,
    hookimpl,
)
from mdc_core.plugins import BLOCK_ENV, build_registry, get_registry, reset_registry

PLUGIN_PKG = Path(__file__).parent / "plugin_pkg"
EXAMPLE_MODULES = ("mdc_example_plugin", "mdc_example_plugin.memdir", "mdc_example_plugin.jsonl")
_MDC_ENV = ("MDC_", "AML_MODEL_DC_")


# conftest.py's autouse ``clean_env`` removes mdc's variables and resets the registry per test.


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests/plugin_pkg`` installed by pip into a folder of its own (not the test venv)."""
    work = tmp_path_factory.mktemp("example_plugin")
    source = work / "source"  # a copy, so the build leaves nothing in the repository
    shutil.copytree(PLUGIN_PKG, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    site = work / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--isolated",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-compile",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(f"pip could not install tests/plugin_pkg:\n{done.stdout}\n{done.stderr}")
    return site


@pytest.fixture
def installed(example_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example plug-in on ``sys.path`` for this test only; its modules forgotten afterwards."""
    monkeypatch.syspath_prepend(str(example_site))
    yield example_site
    for name in EXAMPLE_MODULES:
        sys.modules.pop(name, None)


def fake_distribution(site: Path, name: str, entry_points_txt: str, modules: dict[str, str] | None = None) -> None:
    """A minimal installed distribution: ``<name>.dist-info`` with METADATA and entry points,
    plus top-level modules from source text."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points_txt))
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def plugin(
    name: str, backends: list[BackendPlugin] | None = None, formats: list[FormatPlugin] | None = None
) -> SimpleNamespace:
    """An in-test plug-in object; pluggy names it after ``__name__``."""
    ns = SimpleNamespace(__name__=name)
    if backends is not None:
        ns.mdc_backends = hookimpl(lambda: backends)
    if formats is not None:
        ns.mdc_formats = hookimpl(lambda: formats)
    return ns


def backend_record(name: str, schemes: tuple[str, ...]) -> BackendPlugin:
    return BackendPlugin(name=name, schemes=schemes, factory=lambda root, options: None)  # type: ignore[arg-type,return-value]


def format_record(name: str, extension: str = "txt") -> FormatPlugin:
    return FormatPlugin(name=name, extension=extension, factory=lambda options: None)  # type: ignore[arg-type,return-value]


# -- discovery -------------------------------------------------------------------------------


def test_builtins_are_discovered_through_entry_points(tmp_path: Path) -> None:
    """``local`` and ``csv`` are this distribution's ``mdc`` entry points and load without failures."""
    import mdc_backends.local
    import mdc_formats.csv

    declared = {ep.name: ep.value for ep in entry_points(group="mdc")}
    assert declared["local"] == "mdc_backends.local"
    assert declared["csv"] == "mdc_formats.csv"
    registry = build_registry()
    assert dict(registry.failed) == {}
    assert registry.manager.get_plugin("local") is mdc_backends.local
    assert registry.manager.get_plugin("csv") is mdc_formats.csv
    local = registry.backend("local")
    assert {"", "file"} <= set(local.schemes)
    assert {Capability.APPEND, Capability.CREATE_IF_ABSENT} <= local.capabilities
    assert registry.backend_for_url(str(tmp_path)) is local
    assert registry.backend_for_url(f"file://{tmp_path}") is local
    assert registry.backend_for_url("FILE:///x") is local
    assert registry.format("csv").appendable
    assert registry.format("csv").extension == "csv"


def test_builtins_take_no_private_path() -> None:
    """A registry built from an empty entry-point group has no backend and no format at all."""
    registry = build_registry(group="mdc-no-such-group")
    assert dict(registry.backends) == {}
    assert dict(registry.formats) == {}
    with pytest.raises(UnknownPluginError):
        registry.backend_for_url("/tmp/rows")


def test_registry_is_cached_until_reset() -> None:
    """``get_registry()`` builds once per process; ``reset_registry()`` makes the next call rebuild."""
    first = get_registry()
    assert get_registry() is first
    reset_registry()
    assert get_registry() is not first


def test_registry_views_are_read_only() -> None:
    """The public ``backends``/``formats``/``failed`` views cannot be edited by a caller."""
    registry = build_registry()
    with pytest.raises(TypeError):
        registry.backends["evil"] = registry.backend("local")  # type: ignore[index]
    with pytest.raises(TypeError):
        registry.formats["evil"] = registry.format("csv")  # type: ignore[index]
    with pytest.raises(TypeError):
        registry.failed["evil"] = "x"  # type: ignore[index]


def test_lookups_ignore_case() -> None:
    """Names are registered case-insensitively, so lookups are too."""
    registry = build_registry()
    assert registry.backend("LOCAL") is registry.backend("local")
    assert registry.format("CSV") is registry.format("csv")


# -- the third-party package -----------------------------------------------------------------


def test_third_party_package_is_discovered(installed: Path) -> None:
    """The pip-installed example package's two entry points give ``memdir`` and ``jsonl``."""
    assert Path(distribution("mdc-example-plugin").locate_file("")) == installed
    registry = build_registry()
    assert dict(registry.failed) == {}
    memdir = registry.backend("memdir")
    assert memdir.schemes == ("memdir",)
    assert memdir.capabilities == frozenset({Capability.CREATE_IF_ABSENT})
    assert registry.backend_for_url("memdir:///srv/rows") is memdir
    jsonl = registry.format("jsonl")
    assert (jsonl.extension, jsonl.appendable) == ("jsonl", False)
    assert registry.manager.get_plugin("memdir").__name__ == "mdc_example_plugin.memdir"
    assert registry.manager.get_plugin("jsonl").__name__ == "mdc_example_plugin.jsonl"
    assert registry.backend("local") and registry.format("csv")  # built-ins beside it


def test_example_backend_is_create_only(installed: Path, tmp_path: Path) -> None:
    """``memdir`` writes a key once, refuses to replace it, and cannot append."""
    record = build_registry().backend("memdir")
    backend = record.factory(f"memdir://{tmp_path}", {})
    assert isinstance(backend, Backend)
    assert backend.create("a/b/data-1.jsonl", b"first\n") is True
    assert backend.create("a/b/data-1.jsonl", b"second\n") is False
    assert (tmp_path / "a" / "b" / "data-1.jsonl").read_bytes() == b"first\n"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["data-1.jsonl"]  # no temp files
    with pytest.raises(BackendError):
        backend.append("a/b/data-1.jsonl", b"", b"more\n")
    with pytest.raises(ValueError):
        backend.create("a/../escape.jsonl", b"x")
    backend.close()


def test_example_format_encodes_one_object_per_row(installed: Path) -> None:
    """``jsonl`` turns each row into one JSON object with the table's columns in order."""
    import pyarrow as pa

    fmt = build_registry().format("jsonl").factory({})
    assert isinstance(fmt, Format)
    table = pa.table({"b": [1, None], "a": ["x\ny", "é"], "f": [0.1, float("nan")]})
    encoded = fmt.encode(table)
    assert encoded.header == b""
    lines = encoded.body.decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"b": 1, "a": "x\ny", "f": 0.1},
        {"b": None, "a": "é", "f": None},
    ]
    assert list(json.loads(lines[0])) == ["b", "a", "f"]


# The script a subprocess runs with only PYTHONPATH pointing at the example package: the way a
# user who pip-installed a plug-in would meet it. It prints what collect() returned.
E2E_SCRIPT = r"""
import json, sys
import mdc_core.plugins
assert mdc_core.plugins._registry is None, "the registry must not be built at import time"
assert "mdc_example_plugin.memdir" not in sys.modules, "plug-ins must load on first use"
from mdc_core import ModelDataCollector

storage, fmt = sys.argv[1], sys.argv[2]
collector = ModelDataCollector(
    "churn", "inputs", ["age", "name", "score"], workspace="sub/rg/ws", webservice_name="svc",
    model_version="3", storage=storage, format=fmt, clock=lambda: 1_795_000_000_123_456_000)
batches = [
    [[41, 'Zoë, "quoted"\nline', 0.1], [[7, "b", 1e-300], [8, None, -2.5]]],  # one flush: one object
    [[9, "last", 123456.789]],                                               # the next flush: another
]
collected, flushed = [], []
for batch in batches:
    ids_of_batch = []
    for data in batch:
        correlation = collector.collect(data)
        ids = correlation["$aml_dc_correlation_id"]
        ids = [ids] if isinstance(ids, str) else list(ids)
        rows = data if isinstance(data[0], list) else [data]
        for row, id_ in zip(rows, ids, strict=True):
            collected.append({"row": row, "correlation": {**correlation, "$aml_dc_correlation_id": id_}})
            ids_of_batch.append(id_)
    flushed.append(bool(collector.flush(timeout=60)))
registry = mdc_core.plugins.get_registry()
print(json.dumps({
    "collected": collected, "flushed": flushed, "stats": collector.stats(),
    "backend": registry.backend_for_url(storage).name, "failed": dict(registry.failed),
}))
collector.close()
"""

FEATURES = ["age", "name", "score"]
DAY_FOLDER = Path("sub", "rg", "ws", "svc", "churn", "3", "inputs", "2026", "11", "18")


def run_collector(site: Path, workdir: Path, storage: str, fmt: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_MDC_ENV)}
    env.pop("SERVICE_NAME", None)
    env["PYTHONPATH"] = str(site)
    env["MDC_FLUSH_INTERVAL"] = "3600"  # batches are cut by flush() only
    done = subprocess.run(
        [sys.executable, "-c", E2E_SCRIPT, storage, fmt],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [*FEATURES, *AML_COLUMNS]
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def as_csv_text(value: object) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize(
    ("scheme", "fmt"),
    [("memdir", "jsonl"), ("plain path", "jsonl"), ("memdir", "csv")],
    ids=["memdir+jsonl", "local+jsonl", "memdir+csv"],
)
def test_third_party_plugins_end_to_end(example_site: Path, tmp_path: Path, scheme: str, fmt: str) -> None:
    """Rows collected through a third-party backend and/or format are read back intact, one
    create-only object per batch, named ``data-<writer>-<sequence>.<ext>`` in the day's folder."""
    root = tmp_path / "store"
    storage = f"memdir://{root}" if scheme == "memdir" else str(root)
    result = run_collector(example_site, tmp_path, storage, fmt)
    assert result["failed"] == {}
    assert result["backend"] == ("memdir" if scheme == "memdir" else "local")
    assert result["flushed"] == [True, True]
    assert result["stats"]["written"] == result["stats"]["collected"] == 4
    assert result["stats"]["dropped"] == {}

    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert len(files) == 2, files  # one per flushed batch, nothing else (no temp files, no markers)
    for path in files:
        assert path.parent == root / DAY_FOLDER
        assert re.fullmatch(rf"data-[0-9a-f]{{16}}-[0-9]{{10}}\.{fmt}", path.name), path.name
    assert sorted(files) == sorted((root / DAY_FOLDER).glob(f"data-*.{fmt}"))

    read = read_jsonl if fmt == "jsonl" else read_csv
    stored = {row["$aml_dc_correlation_id"]: row for path in files for row in read(path)}
    assert sorted(len(read(path)) for path in files) == [1, 3]
    assert len(stored) == 4
    for item in result["collected"]:
        correlation = item["correlation"]
        row = stored.pop(correlation["$aml_dc_correlation_id"])
        expected = dict(zip(FEATURES, item["row"], strict=True))
        expected.update({name: correlation[name] for name in AML_COLUMNS})
        assert list(row) == [*FEATURES, *AML_COLUMNS]
        if fmt == "csv":
            expected = {k: as_csv_text(v) for k, v in expected.items()}
        assert row == expected
        assert row["$aml_dc_scoring_timestamp"] == "2026-11-18T11:06:40.123456"
    assert stored == {}


# -- broken, blocked, conflicting and misspelt plug-ins --------------------------------------


def test_plugin_that_fails_to_import_is_logged_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry point whose module raises on import is named in ``failed`` and the log; the
    other plug-ins still work, and lookup errors mention the failure."""
    fake_distribution(
        tmp_path,
        "mdc-broken-plugin",
        "[mdc]\nbroken = mdc_broken_plugin\n",
        {"mdc_broken_plugin": "import mdc_dependency_that_is_not_installed\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="mdc.plugins"):
        registry = build_registry()
    assert list(registry.failed) == ["broken"]
    assert "ModuleNotFoundError" in registry.failed["broken"]
    assert "mdc_dependency_that_is_not_installed" in registry.failed["broken"]
    assert any("'broken'" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    assert registry.backend("local").name == "local"
    assert registry.format("csv").name == "csv"
    with pytest.raises(UnknownPluginError, match="broken: ModuleNotFoundError"):
        registry.format("avro")


def test_plugin_whose_hook_raises_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """A registration hook that raises costs only its own plug-in, like a failed import."""

    def explode() -> list[BackendPlugin]:
        raise RuntimeError("no credentials configured")

    boom = SimpleNamespace(__name__="exploding", mdc_backends=hookimpl(explode))
    with caplog.at_level(logging.WARNING, logger="mdc.plugins"):
        registry = build_registry(modules=[boom])
    assert "RuntimeError: no credentials configured" in registry.failed["exploding"]
    assert "exploding" in caplog.text
    assert registry.backend("local").name == "local"


def test_blocked_plugin_is_removed_and_lookup_lists_known_names(
    installed: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``MDC_BLOCKED_PLUGINS`` switches an entry point off (never imported); asking for it then
    raises ``UnknownPluginError``, a ``LookupError`` and ``ValueError`` listing the known names."""
    assert "jsonl" in get_registry().formats  # the control: present when not blocked
    sys.modules.pop("mdc_example_plugin.jsonl")
    monkeypatch.setenv(BLOCK_ENV, " jsonl , not-installed-anyway")
    reset_registry()
    registry = get_registry()
    assert "jsonl" not in registry.formats
    assert "mdc_example_plugin.jsonl" not in sys.modules
    assert set(registry.formats) == {"csv", "parquet"}
    assert "memdir" in registry.backends  # the same package's other entry point is unaffected
    assert dict(registry.failed) == {}
    with pytest.raises(UnknownPluginError) as caught:
        registry.format("jsonl")
    assert isinstance(caught.value, LookupError)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "'jsonl'" in message
    assert "known formats: csv, parquet" in message
    assert f"blocked by {BLOCK_ENV}: jsonl" in message
    with pytest.raises(UnknownPluginError, match="known formats: csv, parquet"):
        ModelDataCollector("model", storage=str(tmp_path), format="jsonl")


def test_blocked_backend_frees_its_scheme(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocking ``memdir`` makes ``memdir://`` URLs unknown; the error lists the schemes left."""
    monkeypatch.setenv(BLOCK_ENV, "memdir")
    registry = get_registry()
    assert "memdir" not in registry.backends
    with pytest.raises(UnknownPluginError, match=r"memdir:// URLs; known: (\S+ \(\w+\), )*file:// \(local\)"):
        registry.backend_for_url("memdir:///srv/rows")
    with pytest.raises(UnknownPluginError, match=r"known backends: (\w+, )*local\b"):
        registry.backend("memdir")


def test_blocking_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built-ins are blocked like any plug-in: ``MDC_BLOCKED_PLUGINS=csv,parquet`` leaves no format."""
    monkeypatch.setenv(BLOCK_ENV, "csv,parquet")
    registry = get_registry()
    assert dict(registry.formats) == {}
    with pytest.raises(UnknownPluginError, match="known formats: none"):
        registry.format("csv")


def test_duplicate_backend_names_conflict() -> None:
    """Two plug-ins registering one backend name are refused, naming both plug-ins."""
    one = plugin("plugin_one", backends=[backend_record("dup", ("dupa",))])
    two = plugin("plugin_two", backends=[backend_record("DUP", ("dupb",))])
    with pytest.raises(PluginConflictError) as caught:
        build_registry(modules=[one, two])
    message = str(caught.value)
    assert "'dup'" in message and "'plugin_one'" in message and "'plugin_two'" in message
    assert isinstance(caught.value, ValueError)


def test_backend_name_of_a_builtin_conflicts() -> None:
    """A third party cannot silently replace the built-in ``local`` backend."""
    squatter = plugin("squatter", backends=[backend_record("local", ("elsewhere",))])
    with pytest.raises(PluginConflictError, match=r"'local'.*plug-in 'local'.*plug-in 'squatter'"):
        build_registry(modules=[squatter])


def test_duplicate_url_schemes_conflict() -> None:
    """Two backends serving one URL scheme are refused, naming both backends and plug-ins."""
    squatter = plugin("squatter", backends=[backend_record("otherdisk", ("FILE",))])
    with pytest.raises(PluginConflictError) as caught:
        build_registry(modules=[squatter])
    message = str(caught.value)
    assert "'file'" in message
    assert "'local'" in message and "'otherdisk'" in message and "'squatter'" in message


def test_duplicate_format_names_conflict() -> None:
    """Two plug-ins registering one format name are refused, naming both plug-ins."""
    one = plugin("plugin_one", formats=[format_record("tsv")])
    two = plugin("plugin_two", formats=[format_record("tsv")])
    with pytest.raises(PluginConflictError, match=r"'tsv'.*'plugin_one'.*'plugin_two'"):
        build_registry(modules=[one, two])


def test_duplicate_entry_point_names_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second distribution's ``csv`` entry point is refused, naming both distributions,
    instead of one silently shadowing the other depending on ``sys.path`` order."""
    fake_distribution(tmp_path, "mdc-shadow", "[mdc]\ncsv = mdc_shadow_csv\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginConflictError) as caught:
        build_registry()
    message = str(caught.value)
    assert "'csv'" in message and "'mdc'" in message and "'mdc-shadow'" in message
    assert set(build_registry(blocked=["csv"]).formats) == {"parquet"}  # blocking the name is the way out


def test_two_entry_points_for_one_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two entry points naming the same module register it once instead of crashing."""
    fake_distribution(
        tmp_path,
        "mdc-aliased",
        "[mdc]\nalias_a = mdc_aliased\nalias_b = mdc_aliased\n",
        {
            "mdc_aliased": """
            from mdc_core import FormatPlugin, hookimpl

            @hookimpl
            def mdc_formats():
                return [FormatPlugin(name="aliased", extension="txt", factory=dict)]
        """,
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry = build_registry()
    finally:
        sys.modules.pop("mdc_aliased", None)
    assert registry.format("aliased").extension == "txt"
    assert dict(registry.failed) == {}


def test_module_given_and_found_by_entry_point_counts_once() -> None:
    """``build_registry(modules=[...])`` accepts a module that is also an entry point."""
    import mdc_backends.local

    registry = build_registry(modules=[mdc_backends.local])
    assert registry.backend("local").factory is mdc_backends.local.LocalBackend
    assert registry.manager.get_name(mdc_backends.local) == "local"


def test_misspelt_hook_is_caught() -> None:
    """``check_pending`` refuses a plug-in implementing ``mdc_backend`` (no s), naming the plug-in
    and the hook it meant."""

    @hookimpl
    def mdc_backend() -> list[BackendPlugin]:
        return [backend_record("typo", ("typo",))]

    with pytest.raises(pluggy.PluginValidationError) as caught:
        build_registry(modules=[SimpleNamespace(__name__="typo_plugin", mdc_backend=mdc_backend)])
    message = str(caught.value)
    assert "'mdc_backend'" in message and "'typo_plugin'" in message
    assert "did you mean 'mdc_backends'" in message


def test_hookimpl_with_unknown_argument_is_caught() -> None:
    """pluggy refuses an implementation asking for an argument the spec does not pass."""

    @hookimpl
    def mdc_formats(settings: object) -> list[FormatPlugin]:
        return []

    with pytest.raises(pluggy.PluginValidationError, match="settings"):
        build_registry(modules=[SimpleNamespace(__name__="greedy", mdc_formats=mdc_formats)])


@pytest.mark.parametrize(
    ("hook", "returned", "problem"),
    [
        ("mdc_backends", backend_record("single", ("single",)), "must return a list of BackendPlugin"),
        ("mdc_backends", [format_record("wrongkind")], "returned FormatPlugin, not BackendPlugin"),
        ("mdc_backends", [backend_record("str", "memdir")], "schemes must be a tuple"),  # type: ignore[arg-type]
        ("mdc_backends", [backend_record("url", ("memdir://",))], "'memdir://' is not a URL scheme"),
        ("mdc_backends", [backend_record("", ("x",))], "without a name"),
        ("mdc_formats", [format_record("dotted", ".jsonl")], "extension must be like 'csv'"),
    ],
    ids=["not-a-list", "wrong-record", "schemes-str", "scheme-with-slashes", "no-name", "dotted-ext"],
)
def test_malformed_records_name_the_plugin(hook: str, returned: object, problem: str) -> None:
    """A hook returning something other than well-formed records is refused, naming the plug-in."""
    bad = SimpleNamespace(__name__="sloppy", **{hook: hookimpl(lambda: returned)})
    with pytest.raises(pluggy.PluginValidationError) as caught:
        build_registry(modules=[bad])
    assert "'sloppy'" in str(caught.value)
    assert problem in str(caught.value)


# -- unknown names and schemes ---------------------------------------------------------------


def test_unknown_url_scheme_lists_known_schemes(installed: Path) -> None:
    """A URL no backend serves raises ``UnknownPluginError`` listing every known scheme."""
    registry = get_registry()
    with pytest.raises(UnknownPluginError) as caught:
        registry.backend_for_url("gopher://host/rows")
    message = str(caught.value)
    assert "gopher://" in message
    assert "file:// (local)" in message
    assert "memdir:// (memdir)" in message
    assert "plain paths (local)" in message


def test_collector_refuses_unknown_scheme_and_format(tmp_path: Path) -> None:
    """``ModelDataCollector`` raises at construction for an unknown URL scheme or format name."""
    with pytest.raises(UnknownPluginError, match=r"gopher://.*file:// \(local\)"):
        ModelDataCollector("model", storage="gopher://host/rows")
    with pytest.raises(UnknownPluginError, match="unknown format 'avro'; known formats: csv, parquet"):
        ModelDataCollector("model", storage=str(tmp_path), format="avro")
