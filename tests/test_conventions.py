"""House habits, checked on the source: one logger convention, no pointers outside the repo."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.fixtures.source import parse_source

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agent"
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
# Libraries whose loggers we tune on purpose; everything of ours is leadbox.<area>.
FOREIGN_LOGGERS = {"apscheduler", "name"}  # "name": logs.py quiets the protocol libraries by name


def _calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(parse_source(path)) if isinstance(n, ast.Call)]


def test_every_logger_is_leadbox_dot_area() -> None:
    bad = []
    for path in AGENT.rglob("*.py"):
        for call in _calls(path):
            f = call.func
            if isinstance(f, ast.Attribute) and f.attr == "getLogger" and call.args:
                arg = call.args[0]
                name = arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg)
                if not (isinstance(name, str) and (name.startswith("leadbox.") or name in FOREIGN_LOGGERS)):
                    bad.append(f"{path.relative_to(ROOT)}:{call.lineno}: getLogger({name})")
    assert bad == [], "use logging.getLogger(\"leadbox.<area>\"):\n" + "\n".join(bad)


def test_log_calls_carry_fields_in_extra_not_in_format_arguments() -> None:
    bad = []
    for path in AGENT.rglob("*.py"):
        for call in _calls(path):
            f = call.func
            if (isinstance(f, ast.Attribute) and f.attr in LOG_METHODS and isinstance(f.value, ast.Name)
                    and f.value.id == "log" and len(call.args) > 1):
                bad.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert bad == [], "log a fixed event text and put values in extra={...}:\n" + "\n".join(bad)


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text('import logging\nlog = logging.getLogger(__name__)\nlog.info("x %s", 1)\n')
    calls = _calls(sample)
    assert any(isinstance(c.func, ast.Attribute) and c.func.attr == "getLogger" for c in calls)
    assert any(isinstance(c.func, ast.Attribute) and c.func.attr == "info" and len(c.args) == 2 for c in calls)


SKIP_DIRS = {".git", ".venv", "data", "build", "dist", "__pycache__", ".pytest_cache", ".mypy_cache",
             ".ruff_cache", ".hypothesis", "out"}


def _repo_text_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in {".py", ".md", ".toml", ".txt", ".yml", ".yaml", ".cfg", ".lua", ".sh", ""} \
                or path.name in {"Dockerfile", "Makefile"} or path.name.startswith("."):
            files.append(path)
    return files


def test_nothing_in_the_repository_points_outside_it() -> None:
    # Spelled in pieces so this file does not match itself.
    outside = re.compile("|".join([r"\.\./" + "shared", "/work/" + "shared", "DESIGN" + r"\.md",
                                   "STYLE" + r" \d", "STYLE" + r"\.md"]))
    found = []
    for path in _repo_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if outside.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert found == [], "the repository must stand alone:\n" + "\n".join(found)
