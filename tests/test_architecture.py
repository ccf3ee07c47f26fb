"""The layout's two rules, checked on the source: no import cycle, and a core free of adapters.

Every ``import`` and ``from … import`` in every module counts, including those inside functions
and under ``TYPE_CHECKING``: a cycle hidden in a function is still a cycle to the reader.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from tests.fixtures.source import parse_source

AGENT = Path(__file__).resolve().parent.parent / "agent"
ADAPTER_LIBRARIES = {"aiohttp", "imapclient", "openai", "gspread", "google", "smtplib", "sqlite3",
                     "psycopg", "psycopg_pool", "aiosmtpd", "aiosmtplib", "imaplib", "requests"}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in AGENT.rglob("*.py"):
        parts = path.relative_to(AGENT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> list[str]:
    """Every module name imported anywhere in the file (absolute form)."""
    found = []
    for node in ast.walk(parse_source(path)):
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the project uses absolute imports"
            base = node.module or ""
            found.append(base)
            found.extend(f"{base}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for imported in _imports(path):
            if imported in mods and imported != name and not name.startswith(imported + "."):
                graph[name].add(imported)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("name", sorted(n for n in _modules() if n.startswith("agent.core")))
def test_core_imports_no_adapter_library(name: str) -> None:
    bad = sorted({i for i in _imports(_modules()[name]) if i.split(".")[0] in ADAPTER_LIBRARIES})
    assert bad == [], f"{name} imports adapter libraries {bad}"


@pytest.mark.parametrize("name", sorted(n for n in _modules() if n.startswith("agent.core")))
def test_core_imports_no_adapter_package(name: str) -> None:
    allowed = ("agent.core", "agent.errors", "agent.config")
    own = {i for i in _imports(_modules()[name]) if i.startswith("agent")}
    assert sorted(i for i in own if not i.startswith(allowed)) == []


def test_every_package_says_what_lives_there() -> None:
    for init in AGENT.rglob("__init__.py"):
        doc = ast.get_docstring(parse_source(init))
        assert doc and len(doc) > 80, f"{init} needs a docstring: what lives here, what it may import"


def test_no_module_over_the_size_limit() -> None:
    big = {str(p.relative_to(AGENT)): n for p in AGENT.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}


PROBED = {"store", "classifier", "clf", "transport", "mirror", "svc", "_mb", "mb", "inbox"}


def _capability_probes(path: Path) -> list[str]:
    """``getattr``/``hasattr`` on an adapter (a store, classifier, transport, mirror, mailbox)."""
    found = []
    for node in ast.walk(parse_source(path)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in {"getattr", "hasattr"} and node.args):
            target = node.args[0]
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name in PROBED:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_capabilities_are_explicit_methods_not_probed(tmp_path: Path) -> None:
    """The worker, the daemon and the inbox call what the Protocols declare; nothing is probed."""
    sample = tmp_path / "sample.py"
    sample.write_text("getattr(self.store, 'recover', None)\ngetattr(r, k)\nhasattr(clf, 'probe')\n")
    assert len(_capability_probes(sample)) == 2
    for rel in ("core/worker.py", "app/daemon.py", "intake/inbox.py", "intake/inbox_record.py"):
        assert _capability_probes(AGENT / rel) == [], rel
