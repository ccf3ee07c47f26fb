"""The README's examples, run as a user pastes them: the quick start and the config error."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.daemon import ROOT, free_port

README = (ROOT / "README.md").read_text(encoding="utf-8")
LEADBOX = Path(sys.executable).with_name("leadbox")


def shell_env(**extra: str) -> dict[str, str]:
    """`leadbox` on PATH (this interpreter's console script), nothing from the developer's settings."""
    keep = {k: os.environ[k] for k in ("HOME", "LANG") if k in os.environ}
    return {**keep, "PATH": f"{LEADBOX.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "LEADBOX_DOTENV": "0", **extra}


def quick_start() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    block = next(b for b in blocks if "make run &" in b)
    return block


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None or not LEADBOX.exists(), reason="needs curl and the console script")
def test_quick_start_runs_as_pasted(tmp_path: Path) -> None:
    """The block, pasted at once, must not curl before the daemon answers (curl exit 7)."""
    port = free_port()
    script = quick_start().replace("make run &", "leadbox run &").replace(":8000", f":{port}")
    script = "set -u\n" + script + '\nkill -TERM "$!"; wait "$!"\n'
    env = shell_env(LEADBOX_HTTP__PORT=str(port), LEADBOX_REPLY__TEMPLATES_DIR=str(ROOT / "config" / "templates"),
                    LEADBOX_LOGGING__FORMAT="json")
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the quick start did not finish: {out[-3000:]}") from None
    assert proc.returncode == 0, out[-3000:]
    assert '"status": "received"' in out, out[-3000:]
    assert re.search(r"data/outbox/reply-\w+_localhost\.eml", out), out[-3000:]


@pytest.mark.slow
def test_config_error_example_is_the_real_output() -> None:
    block = re.search(r"```console\n[ ]*\$ (.*?)\n(.*?)```", README, flags=re.S)
    assert block, "README shows the config error as a ```console block"
    command, expected = block.group(1), block.group(2).strip()
    assert "config error" in expected
    res = subprocess.run(["bash", "-c", command], cwd=ROOT, env=shell_env(), capture_output=True, text=True,
                         timeout=60)
    shown = [line for line in res.stderr.splitlines() if not line.startswith("{")]
    assert shown == [expected], res.stderr
    assert res.returncode == 2
