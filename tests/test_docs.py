"""The docs are tested: every setting, status code and environment variable is documented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from agent.config import ENV_NAMES, Secrets, Settings
from agent.intake.openapi import OPENAPI

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_agent_toml_and_nothing_else() -> None:
    documented = tomllib.loads((ROOT / "config" / "agent.toml").read_text(encoding="utf-8"))
    for section, model in Settings.model_fields.items():
        assert section in documented, f"[{section}] missing from config/agent.toml"
        fields = set(model.annotation.model_fields)  # type: ignore[union-attr]
        assert set(documented[section]) == fields, (section, fields ^ set(documented[section]))
    assert set(documented) == set(Settings.model_fields)


def test_agent_toml_defaults_equal_code_defaults() -> None:
    documented = tomllib.loads((ROOT / "config" / "agent.toml").read_text(encoding="utf-8"))
    assert Settings.model_validate(documented) == Settings()


def test_readme_starts_with_the_two_commands() -> None:
    block = README.split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make run", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    # The container tests, apart because they need an engine, are named beside it and run by CI.
    assert "make test-container" in README.split("```", 3)[2]
    assert ci.index("\nmake test-container") > ci.index("if ! make test")


def test_every_status_code_is_in_the_readme() -> None:
    codes = {c for path in OPENAPI["paths"].values() for op in path.values() for c in op["responses"]}
    missing = [c for c in codes if not re.search(rf"`{c}\b", README)]
    assert not missing, f"status codes not documented in README: {missing}"


def test_every_environment_variable_is_in_the_readme_and_env_example() -> None:
    names = ENV_NAMES
    assert len(vars(Secrets())) == len(names) - 2  # every secret (+ LEADBOX_CONFIG, LEADBOX_DOTENV)
    env_example = (ROOT / ".env.example").read_text()
    for name in names:
        assert name in README, name
        assert name in env_example, name


def test_every_cli_command_is_in_the_readme() -> None:
    from agent.cli import build_parser

    parser = build_parser()
    actions = parser._actions  # noqa: SLF001 - argparse lists subcommands only here
    sub = next(a for a in actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"leadbox {name}" in README, name
