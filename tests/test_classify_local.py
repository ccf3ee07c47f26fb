"""The offline classifier: targets on the dev set, determinism, languages, contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.classifiers.evaluation import evaluate, load_jsonl
from agent.classifiers.language import detect_language
from agent.classifiers.local import LocalClassifier
from agent.classifiers.model import SHIPPED_MODEL, ModelError, load_model
from agent.classifiers.text import summarize
from agent.core.models import Category

DEV = Path(__file__).parent / "data" / "leads-dev.jsonl"
# Written apart from all training data, never trained on (tests/data/classifier/README.md).
INDEPENDENT = Path(__file__).parent / "data" / "classifier" / "independent.jsonl"
clf = LocalClassifier()


def test_dev_set_targets() -> None:
    loaded = load_jsonl(str(DEV))
    assert not loaded.errors and len(loaded.rows) >= 100
    report = evaluate(loaded.rows, clf)
    assert report["accuracy"] >= 0.90, report["misclassified"]
    assert report["per_category"]["spam"]["precision"] >= 0.98, report["confusion"]


@pytest.mark.parametrize("name", ["independent.jsonl", "writers-e1.jsonl", "writers-e2.jsonl", "writers-e3.jsonl",
                                  "writers-e4.jsonl"])
def test_independent_set_targets(name: str) -> None:
    # Never trained on (tests/data/classifier/README.md): the first set, and four sets by writers
    # who never saw the training data or each other's work. Measured 0.975-0.988 when the shipped
    # model was trained (bench/results_classifier.md); the goals are asserted with a
    # little room. Spam precision is guarded tightly: a real lead marked spam gets no answer.
    loaded = load_jsonl(str(INDEPENDENT.parent / name))
    assert not loaded.errors and len(loaded.rows) == 240
    report = evaluate(loaded.rows, clf)
    assert report["accuracy"] >= 0.94, report["confusion"]
    assert report["per_category"]["spam"]["precision"] >= 0.98, report["confusion"]
    assert min(m["recall"] for m in report["per_category"].values()) >= 0.90, report["confusion"]
    assert report["language_accuracy"] >= 0.97


def test_no_real_lead_is_marked_spam_on_the_unshipped_round() -> None:
    # 960 lines by four writers, never trained on, heavy with spam that reads like an ordinary
    # message: the model misses many of those (recall 0.62) but must not hide real leads for it.
    report = evaluate(load_jsonl(str(INDEPENDENT.parent / "writers-round6.jsonl")).rows, clf)
    assert report["per_category"]["spam"]["precision"] >= 0.98, report["confusion"]
    assert min(report["per_category"][c]["recall"] for c in ("sales", "support", "info")) >= 0.85


def test_shipped_model_is_loaded_and_compact() -> None:
    assert SHIPPED_MODEL.exists()
    assert SHIPPED_MODEL.stat().st_size < 3_000_000  # 1.9 MB; loads in ~0.2 s with the rest
    assert clf.model_path == SHIPPED_MODEL
    verdict = clf.explain("Could you send me a quote for a booking app?")
    assert set(verdict.probabilities) == {"sales", "support", "info", "spam"}
    assert abs(sum(verdict.probabilities.values()) - 1.0) < 0.01


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read"),
        ("{not json", "not valid JSON"),
        ('{"classes": ["sales"]}', "not a leadbox model"),
        ("[1, 2]", "not a leadbox model"),
    ],
)
def test_unusable_model_is_a_clear_error(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "model.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ModelError, match=reason) as info:
        load_model(path)
    assert str(path) in str(info.value)
    with pytest.raises(ModelError):
        LocalClassifier(model_path=path)


def test_language_detection_on_dev_set() -> None:
    rows = load_jsonl(str(DEV)).rows
    right = sum(detect_language(r.message) == r.language for r in rows)
    assert right / len(rows) >= 0.95


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Hola, ¿cuál es el horario de la oficina?", "es"),
        ("Necesitamos ayuda con el servidor, no responde desde ayer", "es"),
        ("Could you tell me where your office is located?", "en"),
        ("The dashboard is not loading for our team", "en"),
        ("Olá, vocês têm escritório em Lisboa?", "pt"),
        ("Não consigo acessar minha conta desde ontem", "pt"),
        # Short messages: no stopword or a tie, decided by the trigram models.
        ("Help, login broken", "en"),
        ("Thanks", "en"),
        ("Preciso com urgência", "pt"),
        ("Sistema fora do ar", "pt"),
        ("Web caída", "es"),
        ("No puedo acceder", "es"),
        ("Good morning", "en"),
        ("Obrigada", "pt"),
    ],
)
def test_language_detection(text: str, lang: str) -> None:
    assert detect_language(text) == lang
    assert clf.classify_sync(text).language == lang


def test_marker_words_are_learned_from_one_language_only() -> None:
    from agent.classifiers.language import MARKER_WORDS, learn_marker_words

    rows = [("precio de la web", "es")] * 5 + [("preço do site", "pt")] * 5 + [("site asdfgh", "en")] * 6
    rows += [("site", "es")] * 2
    markers = learn_marker_words(rows)
    assert markers["precio"] == "es" and markers["preco"] == "pt"  # accent-folded like the text
    assert "site" not in markers  # written by two languages
    assert "asdfgh" not in markers  # keyboard mash never counts
    assert "la" not in markers and "do" not in markers  # the fixed lists decide those
    assert learn_marker_words(rows, min_messages=6) == {}
    shipped = json.loads(MARKER_WORDS.read_text(encoding="utf-8"))["words"]
    assert len(shipped) > 1000 and set(shipped.values()) == {"es", "en", "pt"}


@pytest.mark.parametrize(("text", "lang"), [
    # Two-to-five-word messages whose only telling words are ordinary vocabulary, not stopwords:
    # the trigram models alone got these wrong before the learned marker words.
    ("precio app para restaurante?", "es"),
    ("Certificado caducado, urgente", "es"),
    ("app travando no android", "pt"),
    ("preciso de SEO pra loja", "pt"),
])
def test_short_messages_use_the_learned_marker_words(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_undecidable_text_gets_the_default_language() -> None:
    for default in ("es", "en", "pt"):
        assert detect_language("asdf qwerty zxcvb", default=default) == default
        assert detect_language("12345 !!!", default=default) == default
        assert detect_language("", default=default) == default


def test_language_on_the_independent_set() -> None:
    rows = load_jsonl(str(INDEPENDENT)).rows
    right = sum(detect_language(r.message) == r.language for r in rows)
    assert right / len(rows) >= 0.97
    short = [r for r in rows if len(r.message.split()) <= 5]
    assert len(short) >= 30
    assert sum(detect_language(r.message) == r.language for r in short) / len(short) >= 0.85


# Borderline rules of the spec, written fresh (not copied from the dev set).
@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("We are already customers and would like to upgrade to the premium plan. Can you send pricing?", "sales"),
        ("Quiero cancelar la suscripción a partir del mes que viene.", "support"),
        ("Could you send me a copy of last month's invoice?", "support"),
        ("I'm a journalist at TechDaily. How much do automation projects cost? It's for an article.", "info"),
        ("Somos una asociación y nos gustaría proponerles un acuerdo de referidos sin coste.", "info"),
        ("Hola, ¿están contratando? Les envío mi portfolio de diseñadora UX.", "info"),
        ("Hello, I'm a freelance web developer. I can redesign your website for only $199.", "spam"),
        ("Attached is your invoice #88231. Please review and pay via the secure link: http://invoice-pay.xyz/pay",
         "spam"),
        ("URGENTE: la web está caída y no carga nada", "support"),
        ("qwqwqw zxzxzx kjkjkj", "spam"),
    ],
)
def test_borderline_rules(text: str, category: str) -> None:
    assert clf.classify_sync(text).category == category, clf.explain(text).fired


@pytest.mark.parametrize("text", ["Thanks", "thanks!", "Thank you", "Gracias", "Obrigado", "Ok"])
def test_a_lone_thanks_is_not_spam(text: str) -> None:
    # "thanks" has one vowel in six letters and used to count as gibberish, so spam.
    assert clf.classify_sync(text).category is Category.INFO


def test_unsure_is_not_spam() -> None:
    # One weak promotional word must not hide a real lead.
    result = clf.classify_sync("¿Tienen alguna oferta para ONGs? Queremos una web nueva.")
    assert result.category is Category.SALES


def test_deterministic() -> None:
    text = "Buenas, quiero cotizar un sistema de inventario. Gracias"
    first = clf.classify_sync(text)
    assert all(LocalClassifier().classify_sync(text) == first for _ in range(5))


async def test_async_matches_sync() -> None:
    text = "My invoice shows a double charge for November."
    assert await clf.classify(text) == clf.classify_sync(text)
    health = clf.health()
    assert health.ready and dict(health.details) == {"backend": "local"}


def test_summary_skips_greeting_and_is_one_line() -> None:
    text = "Hola equipo,\n\nla tienda online está caída desde las 9. No carga nada.\nSaludos"
    assert summarize(text) == "La tienda online está caída desde las 9."
    long = "palabra " * 300
    out = summarize(long)
    assert len(out) <= 200 and out.endswith("…")
    assert summarize("") == ""


def test_subject_counts() -> None:
    result = clf.classify_sync("Hola, ¿me ayudan con esto?", subject="Solicitud de presupuesto")
    assert result.category is Category.SALES


@settings(max_examples=200)
@given(st.text(max_size=600), st.one_of(st.none(), st.text(max_size=80)))
def test_contract_holds_for_any_text(text: str, subject: str | None) -> None:
    result = clf.classify_sync(text, subject)
    assert result.category in set(Category)
    assert len(result.summary) <= 200 and "\n" not in result.summary
    assert result.language in {"es", "en", "pt"}
    assert 0.0 <= result.confidence <= 1.0
    assert result.classifier == "local" and not result.needs_reclassify
