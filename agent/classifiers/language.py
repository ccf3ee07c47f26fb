"""Which of Spanish, English and Portuguese a message is written in (the reply's language).

Two stages, cheapest first:

1. Stopwords: words frequent in any message, however short, that only one of the three
   languages writes ("the", "gracias", "obrigado"), plus letters only one writes (ñ, ã), plus
   the *marker words* learned from the shipped training data (``data/language_words.json``:
   words seen in at least 5 messages, 99% of them in one language, such as "precio",
   "orçamento", "caducado"; written by ``bench/train_local_classifier.py``). When they point at
   one language, that is the answer (most messages stop here, in microseconds).
2. Otherwise (no stopword, or a tie: "Help, login broken", "Sistema fora do ar") the character
   trigram models of ``lingua-language-detector`` decide, built for es/en/pt only in its
   low-accuracy mode (about 14 MB and 0.1-0.4 s to build, against ~100 MB and seconds for all
   n-gram orders; measured in bench/results_classifier.md). Stopword hits are added to its
   confidences as a small prior.

A message with no stopword whose words are mostly gibberish ("asdf qwerty") gets ``default``, the
deployment's usual language, which is where an undecidable message most likely comes from.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.classifiers.signals import is_gibberish
from agent.classifiers.text import WORD_RE, fold

#: Stopwords that tell the languages apart. Words that two of them write alike once accents are
#: folded ("de", "que", "como", "esta"/"está", "desde", "todo", "favor", "mas") are left out on
#: purpose: counted for one language they turned Portuguese into Spanish. Accent-folded like the text.
_STOPWORDS: dict[str, frozenset[str]] = {
    "es": frozenset(
        """el la los las del y en por con una un es al lo pero sus le ya cuando muy sin
        hasta hay quien uno les ni otros ese eso ellos esto mi algunos unos yo otro otras
        otra esa estos mucho quienes muchos cual poco ella estar algunas nosotros hola
        buenas buenos dias gracias tienen quiero necesito ustedes os vosotros su sus
        pueden puede hacen estoy somos soy hace ayer nuestro nuestra usted tengo
        podrian saludos tardes noches perdon disculpen disculpe ayuda adios muchas
        ahora""".split()
    ),
    "en": frozenset(
        """the and to of in is it you that for on with this are be at have i we your our my
        not can do does what how please hi hello thanks would could will from there they
        an or but if was were has had been just any some about when where who which their
        its us them dont cant im hey dear team can't need want thank thanks morning
        afternoon evening good great sorry cheers help again keeps got get""".split()
    ),
    "pt": frozenset(
        """o os um uma em com nao do da dos das na nos nas ao pelo pela isso voce voces
        tem sao meu minha seu sua obrigado obrigada ola bom dia gostaria gostariamos
        fizeram podem vou quero queremos tambem ja so ate depois sem mesmo aos esse essa
        ele ela eles elas mais muito estou estamos onde fica boa tarde noite oi valeu
        desculpe desculpem ajuda socorro fora tchau voce obrigadao""".split()
    ),
}

_STOPWORD_LANGS: dict[str, tuple[str, ...]] = {}
for _lang, _words in _STOPWORDS.items():
    for _w in _words:
        _STOPWORD_LANGS[_w] = (*_STOPWORD_LANGS.get(_w, ()), _lang)

_FIXED_WORDS = frozenset(_STOPWORD_LANGS)
#: Marker words learned from the shipped training data (see the module docstring).
MARKER_WORDS = Path(__file__).resolve().parent / "data" / "language_words.json"
try:
    with open(MARKER_WORDS, encoding="utf-8") as _fh:
        for _w, _lang in json.load(_fh)["words"].items():
            _STOPWORD_LANGS.setdefault(_w, (_lang,))
except (OSError, ValueError, KeyError, TypeError):  # a missing or broken file: the fixed lists only
    pass


def learn_marker_words(rows: Iterable[tuple[str, str]], min_messages: int = 5,
                       purity: float = 0.99) -> dict[str, str]:
    """Words of (message, language) rows that point at one language: in at least
    ``min_messages`` messages, ``purity`` of them in one language. Keyboard mash, digits and
    one-letter words never count; the fixed stopword lists win over what is learned."""
    seen: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for message, lang in rows:
        for tok in set(WORD_RE.findall(fold(message))):
            if len(tok) > 1 and not tok.isdigit() and not is_gibberish(tok):
                seen[tok][lang] += 1
    out = {}
    for word, by_lang in seen.items():
        lang, top = by_lang.most_common(1)[0]
        total = sum(by_lang.values())
        if total >= min_messages and top / total >= purity and word not in _FIXED_WORDS:
            out[word] = lang
    return dict(sorted(out.items()))

#: Characters only one of the three languages writes.
_LANG_CHARS = {"es": "ñ¿¡", "pt": "ãõçêâôà"}
LANGUAGES = ("es", "en", "pt")
#: Weight of one stopword hit when added to lingua's confidences (which sum to 1).
_PRIOR = 0.1

_lock = threading.Lock()
_detector: Any = None


def statistical_detector() -> Any:
    """The lingua detector for es/en/pt, built once per process (thread-safe)."""
    global _detector
    if _detector is None:
        with _lock:
            if _detector is None:
                from lingua import Language, LanguageDetectorBuilder

                _detector = (
                    LanguageDetectorBuilder.from_languages(
                        Language.SPANISH, Language.ENGLISH, Language.PORTUGUESE
                    )
                    .with_low_accuracy_mode()
                    .with_preloaded_language_models()
                    .build()
                )
    return _detector


_ISO = {"SPANISH": "es", "ENGLISH": "en", "PORTUGUESE": "pt"}


def detect_language(text: str, default: str = "es") -> str:
    """es, en or pt (see the module docstring); ``default`` when nothing tells."""
    return detect_from_tokens(text, WORD_RE.findall(fold(text)), default)


def detect_from_tokens(text: str, tokens: list[str], default: str) -> str:
    """:func:`detect_language` when the folded word tokens are already at hand."""
    scores = dict.fromkeys(LANGUAGES, 0.0)
    for tok in tokens:
        for lang in _STOPWORD_LANGS.get(tok, ()):
            scores[lang] += 1.0
    lowered = text.lower()
    for lang, chars in _LANG_CHARS.items():
        for c in chars:
            if c in lowered:
                scores[lang] += 2.0 * lowered.count(c)
    best = max(scores.values())
    winners = [lang for lang, s in scores.items() if s == best]
    if best > 0 and len(winners) == 1:
        return winners[0]
    words = [t for t in tokens if not t.isdigit()]
    if not words or (best == 0 and _mostly_gibberish(words)):
        return default
    combined = dict(scores)
    for value in statistical_detector().compute_language_confidence_values(text):
        iso = _ISO.get(value.language.name)
        if iso is not None:
            combined[iso] = value.value + _PRIOR * scores[iso]
    top = max(combined.values())
    ranked = [lang for lang in LANGUAGES if combined[lang] == top]
    return default if default in ranked else ranked[0]


def _mostly_gibberish(words: list[str]) -> bool:
    return sum(1 for w in words if is_gibberish(w)) * 2 >= len(words)
