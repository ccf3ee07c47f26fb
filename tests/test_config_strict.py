"""Config typos are one-line errors naming the key; booleans are strict; empty env means unset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "config" / "templates"


def _load(tmp_path: Path, toml: str, **env: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "agent.toml"
    path.write_text(toml, encoding="utf-8")
    return load_config(str(path), env={"LEADBOX_REPLY__TEMPLATES_DIR": str(TEMPLATES), **env})


def test_a_typo_in_a_category_key_is_a_one_line_cli_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[priority]\nby_category = { suport = "high" }\n', encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", "--config", str(path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "LEADBOX_DOTENV": "0"})
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "priority.by_category" in lines[0] and "'suport'" in lines[0]


@pytest.mark.parametrize(("toml", "key", "bad"), [
    ('[priority]\nby_category = { suport = "high" }', "priority.by_category", "suport"),
    ('[priority]\nby_category = { support = "Alta" }', "priority.by_category.support", "Alta"),
    ('[priority]\ndomains = { "vip.com" = "urgent" }', "priority.domains.vip.com", "urgent"),
    ('[labels]\ncategories = { suport = "Soporte" }', "labels.categories", "suport"),
    ('[labels]\npriorities = { hihg = "Alta" }', "labels.priorities", "hihg"),
])
def test_category_and_priority_tables_take_only_known_names(tmp_path: Path, toml: str, key: str,
                                                            bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, toml + "\n")
    assert str(e.value).startswith(f"config error: {key}: ")
    assert bad in str(e.value) and "\n" not in str(e.value)


def test_known_category_keys_are_accepted(tmp_path: Path) -> None:
    config = _load(tmp_path, '[priority]\nby_category = { support = "low", spam = "low" }\n')
    assert config.settings.priority.by_category == {"support": "low", "spam": "low"}


@pytest.mark.parametrize("value", ['"yes"', '"true"', "1", "0", '"on"'])
def test_toml_booleans_are_strict(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"^config error: inbox\.enabled: must be true or false"):
        _load(tmp_path, f"[inbox]\nenabled = {value}\n")


@pytest.mark.parametrize("value", ["yes", "on", "no", "tru", "2"])
def test_env_booleans_take_only_true_false_1_0(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, "", LEADBOX_REPLY__ENABLED=value)
    assert str(e.value) == f"LEADBOX_REPLY__ENABLED: must be true, false, 1 or 0 (got '{value}')"


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("TRUE", True),
                                                 ("false", False), ("0", False), (" False ", False)])
def test_env_boolean_forms(tmp_path: Path, value: str, expected: bool) -> None:
    assert _load(tmp_path, "", LEADBOX_SHEETS__IMPORT_EXISTING=value).settings.sheets.import_existing is expected


def test_an_empty_env_value_counts_as_unset(tmp_path: Path) -> None:
    config = _load(tmp_path, "[http]\nport = 9001\n", LEADBOX_HTTP__PORT="", LEADBOX_REPLY__ENABLED="",
                   LEADBOX_PRIORITY__DOMAINS=" ", DATABASE_URL="", LEADBOX_CONFIG="")
    assert config.settings.http.port == 9001
    assert config.settings.reply.enabled is True
    assert config.settings.priority.domains == {}
    assert config.store_url == "sqlite:///data/leadbox.db"
