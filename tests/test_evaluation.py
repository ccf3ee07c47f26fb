"""Evaluation: metrics by hand, bad input lines, the `leadbox eval` entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.classifiers.evaluation import evaluate, format_report, load_jsonl, run_eval, score
from agent.classifiers.local import LocalClassifier
from tests.fixtures.openai_fake import FakeOpenAIServer


def test_score_by_hand() -> None:
    pairs = [("sales", "sales"), ("sales", "info"), ("spam", "spam"), ("info", "spam"), ("support", "support")]
    r = score(pairs)
    assert r["n"] == 5 and r["accuracy"] == 0.6
    assert r["confusion"]["sales"]["info"] == 1 and r["confusion"]["info"]["spam"] == 1
    assert r["per_category"]["spam"]["precision"] == 0.5
    assert r["per_category"]["spam"]["recall"] == 1.0
    assert r["per_category"]["sales"]["recall"] == 0.5
    assert r["per_category"]["sales"]["precision"] == 1.0
    assert r["per_category"]["info"]["f1"] == 0.0


def write(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


GOOD = [
    json.dumps({"message": "¿Cuál es su horario de atención?", "category": "info"}),
    json.dumps({"message": "Necesito un presupuesto para una web", "category": "sales"}),
    json.dumps({"message": "GANA DINERO con bitcoin, haga clic aquí: bit.ly/x", "category": "spam"}),
    json.dumps({"message": "No puedo entrar al panel, contraseña incorrecta", "category": "info"}),
]


def test_load_jsonl_reports_bad_lines(tmp_path: Path) -> None:
    path = write(tmp_path, [GOOD[0], "{not json", "[1, 2]", json.dumps({"message": "x", "category": "urgent"}),
                            json.dumps({"category": "info"}), "", GOOD[1]])
    loaded = load_jsonl(path)
    assert [r.line for r in loaded.rows] == [1, 7]
    assert [n for n, _ in loaded.errors] == [2, 3, 4, 5]
    reasons = dict(loaded.errors)
    assert "JSON" in reasons[2] and "object" in reasons[3] and "urgent" in reasons[4] and "message" in reasons[5]


def test_evaluate_lists_misclassified(tmp_path: Path) -> None:
    report = evaluate(load_jsonl(write(tmp_path, GOOD)).rows, LocalClassifier())
    assert report["n"] == 4 and report["accuracy"] == 0.75
    assert report["misclassified"] == [
        {"line": 4, "expected": "info", "got": "support", "message": "No puedo entrar al panel, contraseña incorrecta"}
    ]
    text = format_report(report)
    assert "accuracy: 75.0%" in text and "line 4: info -> support" in text


def test_run_eval_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, [*GOOD, "garbage"])
    assert run_eval(path, "local", True, None) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert {"accuracy", "per_category", "confusion", "n"} <= report.keys()
    assert report["n"] == 4 and report["skipped_lines"] == [{"line": 5, "reason": report["skipped_lines"][0]["reason"]}]
    assert ":5: skipped" in err
    assert report["messages_per_s"] > 0
    assert "language_accuracy" not in report  # no line says its language


def test_run_eval_reports_language_and_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        json.dumps({"message": "Help, login broken", "category": "support", "language": "en"}),
        json.dumps({"message": "Preciso com urgência", "category": "support", "language": "pt"}),
        json.dumps({"message": "¿Cuánto cuesta una web?", "category": "sales", "language": "es"}),
        json.dumps({"message": "Thanks", "category": "info", "language": "es"}),  # labelled wrong
        json.dumps({"message": "Necesito un presupuesto", "category": "sales"}),  # no language
    ]
    assert run_eval(write(tmp_path, lines), "local", True, None) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["language_accuracy"] == 0.75
    assert report["per_language"] == {
        "en": {"accuracy": 1.0, "n": 1}, "es": {"accuracy": 0.5, "n": 2}, "pt": {"accuracy": 1.0, "n": 1},
    }
    assert isinstance(report["messages_per_s"], float) and report["messages_per_s"] > 0
    assert run_eval(write(tmp_path, lines), "local", False, None) == 0
    text = capsys.readouterr().out
    assert "messages/s" in text and "reply language right: 75.0%" in text


def test_run_eval_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_eval(str(tmp_path / "missing.jsonl"), "local", False, None) == 2
    assert run_eval(write(tmp_path, ["{}"]), "local", False, None) == 2
    assert run_eval(write(tmp_path, GOOD), "openai", False, None) == 2  # no key, no base_url
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_run_eval_openai_against_fake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], openai_server: FakeOpenAIServer
) -> None:
    path = write(tmp_path, GOOD)
    assert run_eval(path, "openai", True, "test", base_url=openai_server.base_url, max_retries=0) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 4 and report["classifier"] == "openai" and report["fallbacks"] == 0
    assert len(openai_server.requests) == 4
