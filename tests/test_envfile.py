"""`.env` in the working directory feeds every command; set variables win; the suite ignores it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import envfile
from agent.config import ENV_NAMES
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BASE = {"PATH": "/usr/bin:/bin", "LEADBOX_REPLY__TEMPLATES_DIR": str(ROOT / "config" / "templates")}


def _check_config(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "check-config"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def _effective(cwd: Path, **env: str) -> dict:  # type: ignore[type-arg]
    out = _check_config(cwd, {**BASE, **env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_every_command_reads_dot_env_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LEADBOX_HTTP__PORT=9123\nOPENAI_API_KEY=sk-from-dotenv-file\n"
                                   "LEADBOX_CLASSIFIER__BACKEND=local\n", encoding="utf-8")
    out = _effective(tmp_path)
    assert out["http"]["port"] == 9123
    assert out["environment"]["openai_api_key"].startswith("***")
    assert "sk-from-dotenv-file" not in json.dumps(out)


def test_variables_already_set_win_over_dot_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LEADBOX_HTTP__PORT=9123\n", encoding="utf-8")
    assert _effective(tmp_path, LEADBOX_HTTP__PORT="9000")["http"]["port"] == 9000


def test_an_empty_variable_counts_as_unset_and_dot_env_fills_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LEADBOX_HTTP__PORT=9123\n", encoding="utf-8")
    assert _effective(tmp_path, LEADBOX_HTTP__PORT="")["http"]["port"] == 9123


def test_no_dot_env_means_defaults(tmp_path: Path) -> None:
    assert _effective(tmp_path)["http"]["port"] == 8000


def test_a_malformed_dot_env_is_a_one_line_error_without_its_text(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# ok\nEMAIL_PASS hunter2-secret\n", encoding="utf-8")
    out = _check_config(tmp_path, BASE)
    assert out.returncode == 2
    assert out.stderr.strip() == "leadbox: .env, line 2: expected NAME=value"


def test_the_suite_runs_without_a_developers_environment() -> None:
    assert os.environ.get("LEADBOX_DOTENV") == "0"
    leaked = [k for k in os.environ if k in ENV_NAMES and k != "LEADBOX_DOTENV"
              or k.startswith("LEADBOX_") and "__" in k or k.startswith(("OPENAI_", "GOOGLE_"))]
    assert leaked == []


def test_a_leadbox_started_by_the_suite_ignores_dot_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LEADBOX_HTTP__PORT=9123\n", encoding="utf-8")
    out = _check_config(tmp_path, {**os.environ, **BASE})  # what the daemon fixtures pass
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["http"]["port"] == 8000


def test_parse_forms() -> None:
    text = "\n".join([
        "# comment", "", "export A=1", "B = two words  # trailing comment", "C='lit # $x \\n'",
        'D="line\\nnext \\"q\\" \\\\"', "E=", "F=a#b", "G=\"\"",
    ])
    assert envfile.parse(text) == {"A": "1", "B": "two words", "C": "lit # $x \\n",
                                   "D": 'line\nnext "q" \\', "E": "", "F": "a#b", "G": ""}


@pytest.mark.parametrize("line", ["NOEQUALS", "1A=x", "A='open", 'A="open', "A-B=1"])
def test_parse_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(ConfigError, match=r"^\.env, line 1: "):
        envfile.parse(line)


def test_load_fills_only_unset_or_empty(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=file\nB=file\nC=file\nD=\n", encoding="utf-8")
    env = {"A": "set", "B": ""}
    assert envfile.load(env, path) == ["B", "C"]
    assert env == {"A": "set", "B": "file", "C": "file"}
    assert envfile.load({"LEADBOX_DOTENV": "0"}, path) == []
