"""Settings are documented once, in the models: config/agent.toml and --explain come from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config_docs import sections, template, toml_value

ROOT = Path(__file__).resolve().parents[1]
KEYS = [(name, key, field) for name, model in sections() for key, field in model.model_fields.items()]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_committed_agent_toml_is_what_config_template_prints() -> None:
    out = _cli("config-template")
    assert out.returncode == 0, out.stderr
    committed = (ROOT / "config" / "agent.toml").read_text(encoding="utf-8")
    assert committed == out.stdout, "config/agent.toml is stale: run `leadbox config-template > config/agent.toml`"


@pytest.mark.parametrize(("section", "key", "field"), KEYS, ids=[f"{s}.{k}" for s, k, _ in KEYS])
def test_every_setting_has_help_text(section: str, key: str, field: object) -> None:
    description = getattr(field, "description", None)
    assert description and len(description) > 8, f"{section}.{key}: add Field(description=...)"
    assert f"# {description.split()[0]}" in template()


def test_every_section_says_what_it_is() -> None:
    for name, model in sections():
        assert model.__doc__ and model.__doc__.strip(), f"[{name}] needs a docstring"


def test_check_config_explain_prints_every_key_with_its_help(tmp_path: Path) -> None:
    templates = ROOT / "config" / "templates"
    (tmp_path / "agent.toml").write_text(f'[http]\nport = 9123\n[reply]\ntemplates_dir = "{templates}"\n',
                                         encoding="utf-8")
    out = _cli("check-config", "--explain", "--config", str(tmp_path / "agent.toml"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for section, key, field in KEYS:
        head = next((i for i, line in enumerate(lines) if line.startswith(f"{section}.{key} = ")), None)
        assert head is not None, f"{section}.{key} missing from --explain"
        assert lines[head + 1].strip() == field.description
        assert lines[head + 2].strip() == f"env: LEADBOX_{section.upper()}__{key.upper()}"
    assert "http.port = 9123  (default 8000)" in lines


def test_toml_values_round_trip() -> None:
    import tomllib

    value = {"a": [1, 2.5, True, "x\"y"], "b": {"k": "Información", "with space": {}}}
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_long_arrays_wrap_between_items_only() -> None:
    import tomllib

    from agent.config_docs import _assignment

    value = [f"phrase number {i} with spaces" for i in range(12)]
    lines = _assignment("words", value)
    assert len(lines) > 3 and all(len(line) <= 100 for line in lines)
    assert tomllib.loads("\n".join(lines))["words"] == value
