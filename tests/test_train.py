"""``leadbox train``: cross-validated before/after, refusal of a worse model, atomic write, and
the daemon loading the written model at start (or refusing to start on a broken one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.classifiers.local import LocalClassifier
from agent.classifiers.model import SHIPPED_MODEL, LocalModel, load_model
from agent.classifiers.training import SHIPPED_TRAINING, fit, load_rows
from agent.cli import main
from agent.core.models import Category
from tests.fixtures.daemon import ROOT, all_final, base_env, wait_for

HOLDOUT = ROOT / "tests" / "data" / "classifier" / "holdout.jsonl"


def rows_per_category(n: int) -> list[dict[str, Any]]:
    """The first ``n`` lines of every category of the same-style held-out file."""
    seen: dict[str, int] = {}
    out = []
    for line in HOLDOUT.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if seen.get(row["category"], 0) < n:
            seen[row["category"]] = seen.get(row["category"], 0) + 1
            out.append(row)
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def train(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["--config", str(ROOT / "config" / "agent.toml"), "train", *args, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_the_package_ships_its_training_data() -> None:
    rows, problems = load_rows([SHIPPED_TRAINING])
    assert not problems and len(rows) >= 1000
    assert {r.category for r in rows} == {c.value for c in Category}


@pytest.mark.slow
def test_train_writes_a_better_model_atomically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "mine.jsonl", rows_per_category(12))
    out = tmp_path / "models" / "model.json"
    # The "current" model is one that calls everything info: any trained model beats it.
    info_only = LocalModel(bias=(-5.0, -5.0, 5.0, -5.0), weights={}, rule_weights=((0.0,) * 4,) * 4,
                           spam_min_prob=0.6, spam_margin=0.3, spam_min_rule=0.0)
    out.parent.mkdir()
    out.write_text(json.dumps(info_only.to_json()), encoding="utf-8")
    code, report, err = train(capsys, str(data), "--out", str(out), "--folds", "3")
    assert code == 0, err
    assert report["written"] is True and report["rows"] == 48 and report["folds"] == 3
    assert report["before"]["accuracy"] == 0.25  # info right, the other three wrong
    assert report["after"]["accuracy"] > report["before"]["accuracy"]
    assert set(report["after"]["recall"]) == {"sales", "support", "info", "spam"}
    model = load_model(out)
    assert model.info["rows"] == 48 and model.info["cv_after"] == report["after"]
    assert [p.name for p in out.parent.iterdir()] == ["model.json"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o644 & ~umask  # not mkstemp's 0600: another user reads it
    clf = LocalClassifier(model_path=out)
    assert clf.classify_sync("Hola, ¿me pasan un presupuesto para una tienda online?").category is Category.SALES


def test_train_refuses_a_worse_model_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Two lines per category: a model learnt from a few lines per fold is worse than the shipped one.
    data = write_jsonl(tmp_path / "few.jsonl", rows_per_category(2))
    out = tmp_path / "model.json"
    code, report, err = train(capsys, str(data), "--out", str(out), "--folds", "2")
    assert code == 1 and report["written"] is False and not out.exists()
    assert report["current_model"] == str(SHIPPED_MODEL)
    assert report["worse"] and "worse" in report["reason"]
    assert report["after"]["accuracy"] < report["before"]["accuracy"] or (
        report["after"]["spam_precision"] < report["before"]["spam_precision"])
    code, report, _ = train(capsys, str(data), "--out", str(out), "--folds", "2", "--force")
    assert code == 0 and report["written"] is True and out.exists()
    load_model(out)


def test_train_text_report_says_before_and_after(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "few.jsonl", rows_per_category(2))
    code = main(["--config", str(ROOT / "config" / "agent.toml"), "train", str(data),
                 "--out", str(tmp_path / "m.json"), "--folds", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert "current" in out and "new" in out and "accuracy" in out and "spam precision" in out
    assert "not written" in out and "--force" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json\n", "0 usable labelled lines"),
        ('{"message": "hola", "category": "sales"}\n' * 6, "every category needs at least 2"),
        ("\udcff", "not UTF-8 text"),
    ],
)
def test_train_input_problems_are_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str,
) -> None:
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_bytes(content.encode("utf-8", "surrogateescape"))  # "\udcff": a lone 0xff byte
    code, report, err = train(capsys, str(path), "--out", str(tmp_path / "m.json"))
    assert code == 2 and not report and not (tmp_path / "m.json").exists()
    assert message in err and "Traceback" not in err


def test_train_will_not_silently_replace_a_broken_current_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_jsonl(tmp_path / "mine.jsonl", rows_per_category(3))
    out = tmp_path / "model.json"
    out.write_text("{broken", encoding="utf-8")
    code, _, err = train(capsys, str(data), "--out", str(out), "--folds", "2")
    assert code == 2 and "not valid JSON" in err and "--force" in err
    assert out.read_text(encoding="utf-8") == "{broken"


def test_model_is_deterministic() -> None:
    from agent.classifiers.evaluation import LabeledRow
    from agent.classifiers.training import examples_from

    rows = [LabeledRow(line=i, message=r["message"], category=r["category"])
            for i, r in enumerate(rows_per_category(10))]
    first = fit(examples_from(rows, _settings()), _settings()).to_json()
    assert fit(examples_from(rows, _settings()), _settings()).to_json() == first


def test_cross_validation_by_writer_leaves_each_writer_out_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.classifiers import training
    from agent.classifiers.evaluation import LabeledRow

    writers = ("ana", "bob", "cruz")
    rows = [LabeledRow(line=i, message=r["message"], category=r["category"], source=writers[i % 3])
            for i, r in enumerate(rows_per_category(9))]
    made: list[Any] = []
    real_fit, real_examples = training.fit, training.examples_from
    trained_on: list[set[str | None]] = []

    def recording_examples(rs: Any, settings: Any) -> Any:
        made[:] = real_examples(rs, settings)
        return made

    def recording_fit(examples: Any, settings: Any) -> Any:
        index = {id(ex): i for i, ex in enumerate(made)}
        trained_on.append({rows[index[id(ex)]].source for ex in examples})
        return real_fit(examples, settings)

    monkeypatch.setattr(training, "examples_from", recording_examples)
    monkeypatch.setattr(training, "fit", recording_fit)
    figures = training.cross_validate(rows, _settings(), by_source=True)
    assert figures.n == len(rows)
    # One fit per writer, each on the other two writers only.
    assert sorted(map(sorted, trained_on)) == [["ana", "bob"], ["ana", "cruz"], ["bob", "cruz"]]


def _settings() -> Any:
    from agent.classifiers.training import TrainSettings

    return TrainSettings(steps=40)


async def test_daemon_loads_the_model_at_model_path(make_daemon: Any, tmp_path: Path) -> None:
    # A model that answers "info" to everything: the daemon classifying a plain sales lead as
    # info proves it loaded this file and not the shipped one.
    info_only = LocalModel(bias=(-5.0, -5.0, 5.0, -5.0), weights={}, rule_weights=((0.0,) * 4,) * 4,
                           spam_min_prob=0.6, spam_margin=0.3, spam_min_rule=0.0)
    path = tmp_path / "custom-model.json"
    path.write_text(json.dumps(info_only.to_json()), encoding="utf-8")
    d, c = await make_daemon({"LEADBOX_CLASSIFIER__MODEL_PATH": str(path)})
    r = await c.post("/leads", json={"name": "Ana", "email": "ana@shop.example",
                                     "message": "Hola, queremos un presupuesto para una tienda online."})
    assert r.status == 202
    lead_id = (await r.json())["id"]

    async def done() -> bool:
        return await all_final(d, 1)

    await wait_for(done)
    lead = await d.store.get(lead_id)
    assert lead is not None and lead.category is Category.INFO


def test_daemon_refuses_to_start_with_a_broken_model(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text('{"classes": ["sales"]}', encoding="utf-8")
    env = {**base_env(tmp_path), "LEADBOX_CLASSIFIER__MODEL_PATH": str(path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(ROOT / "config" / "agent.toml")],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert f"classifier model {path} is not a leadbox model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wiring_uses_model_path_and_default_language(tmp_path: Path) -> None:
    from agent.app.wiring import make_classifier, make_local_classifier
    from agent.config import load_config

    env = {**base_env(tmp_path), "LEADBOX_REPLY__DEFAULT_LANGUAGE": "pt"}
    config = load_config(str(ROOT / "config" / "agent.toml"), env=env)
    local = make_local_classifier(config)
    assert local.model_path == SHIPPED_MODEL  # tmp/model.json does not exist
    assert local.classify_sync("asdf qwerty zxcvb").language == "pt"
    info_only = LocalModel(bias=(-5.0, -5.0, 5.0, -5.0), weights={}, rule_weights=((0.0,) * 4,) * 4,
                           spam_min_prob=0.6, spam_margin=0.3, spam_min_rule=0.0)
    (tmp_path / "model.json").write_text(json.dumps(info_only.to_json()), encoding="utf-8")
    clf = make_classifier(config)
    assert isinstance(clf, LocalClassifier) and clf.model_path == tmp_path / "model.json"
    assert clf.classify_sync("Necesito un presupuesto para una web").category is Category.INFO
