"""Meta-tests that keep the hook reference honest: every ``mdc_*`` hookspec in
``mdc_core.hookspecs`` has a ``## <hook>`` section with an example in ``docs/plugin_hooks.md``
and a test file that mentions it; the docs document no hook that does not exist; and code the
docs quote from a file (``# file: <path>``) is that file's current text."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pluggy
import pytest

from mdc_core import hookspecs

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DOCS = ROOT / "docs" / "plugin_hooks.md"
SPEC_MARKER = f"{hookspecs.PROJECT}_spec"  # the attribute pluggy's HookspecMarker sets


def hook_names(module: types.ModuleType) -> list[str]:
    """Functions named ``mdc_*`` that carry the hookspec marker."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if name.startswith("mdc_") and callable(obj) and getattr(obj, SPEC_MARKER, None) is not None
    )


def sections(markdown: str) -> dict[str, str]:
    """The text of each ``## heading`` section, by heading."""
    parts = re.split(r"^## +(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def files_mentioning(hook: str, tests_dir: Path) -> list[Path]:
    """Test files other than this meta-test whose text names ``hook``."""
    pattern = re.compile(rf"\b{re.escape(hook)}\b")
    return [
        path
        for path in sorted(tests_dir.rglob("test_*.py"))
        if path.name != Path(__file__).name and pattern.search(path.read_text(encoding="utf-8"))
    ]


HOOKS = hook_names(hookspecs)
DOC_TEXT = DOCS.read_text(encoding="utf-8")
DOC_SECTIONS = sections(DOC_TEXT)


def test_hooks_are_found_as_pluggy_sees_them() -> None:
    """The marker scan finds exactly the hooks pluggy registers from ``mdc_core.hookspecs``."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    assert HOOKS, "no hookspecs found: the scan itself is broken"
    assert sorted(n for n in vars(manager.hook) if n.startswith("mdc_")) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_doc_section(hook: str) -> None:
    """Each hook has a ``## <hook>`` section in docs/plugin_hooks.md with a Python example."""
    assert hook in DOC_SECTIONS, f"docs/plugin_hooks.md has no '## {hook}' section"
    assert "```python" in DOC_SECTIONS[hook], f"the '## {hook}' section has no Python example"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_test(hook: str) -> None:
    """Each hook is named by at least one test file besides this one."""
    assert files_mentioning(hook, TESTS), f"no test file in tests/ mentions {hook}"


def test_docs_document_only_existing_hooks() -> None:
    """No ``## mdc_*`` section describes a hook that is not in ``mdc_core.hookspecs``."""
    stale = sorted(h for h in DOC_SECTIONS if h.startswith("mdc_") and h not in HOOKS)
    assert stale == [], f"docs/plugin_hooks.md documents hooks that do not exist: {stale}"


QUOTED = re.compile(r"^```python\n# file: (\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def test_quoted_examples_match_their_files() -> None:
    """Code the docs quote with ``# file: <path>`` is that file's text, so examples cannot rot."""
    quoted = QUOTED.findall(DOC_TEXT)
    assert quoted, "the docs quote no example file"
    for relative, code in quoted:
        path = ROOT / relative
        assert path.is_file(), f"docs/plugin_hooks.md quotes a missing file: {relative}"
        assert code == path.read_text(encoding="utf-8"), f"docs/plugin_hooks.md is out of date with {relative}"


# -- the checks above can fail -----------------------------------------------------------------


def test_scan_sees_a_new_hook_without_docs_or_tests(tmp_path: Path) -> None:
    """A hookspec added to a module is found, and lacks a section and a test until given them."""
    module = types.ModuleType("fake_hookspecs")

    @hookspecs.hookspec
    def mdc_new_thing() -> list[object]:  # type: ignore[empty-body]
        """An imaginary hook."""

    def mdc_not_a_hook() -> None:
        """Unmarked: not a hook."""

    module.mdc_new_thing = mdc_new_thing  # type: ignore[attr-defined]
    module.mdc_not_a_hook = mdc_not_a_hook  # type: ignore[attr-defined]
    assert hook_names(module) == ["mdc_new_thing"]
    assert "mdc_new_thing" not in sections(DOC_TEXT)
    (tmp_path / "test_other.py").write_text("def test_x():\n    assert 'mdc_new_things'\n")
    (tmp_path / Path(__file__).name).write_text("# mdc_new_thing\n")  # the meta-test does not count
    assert files_mentioning("mdc_new_thing", tmp_path) == []
    (tmp_path / "test_new.py").write_text("def test_x():\n    assert 'mdc_new_thing'\n")
    assert files_mentioning("mdc_new_thing", tmp_path) == [tmp_path / "test_new.py"]


def test_sections_are_split_by_level_two_headings() -> None:
    """Only ``## name`` headings make sections; ``###`` and prose mentions do not."""
    text = "# Title\n## mdc_a\nuse mdc_b here\n### mdc_c\n## mdc_d  \nend\n"
    assert list(sections(text)) == ["mdc_a", "mdc_d"]
    assert "### mdc_c" in sections(text)["mdc_a"]
