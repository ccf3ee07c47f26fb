"""Which of Spanish, English and Portuguese a message is written in (the reply's language).

Why stopwords first: they are frequent in any message, however short, and do not depend on the
topic. Ties go to ``default`` (the deployment's usual language), which is where an undecidable
message most likely comes from.
"""

from __future__ import annotations

from agent.classifiers.text import WORD_RE, fold

#: Stopwords that tell the languages apart (shared words such as "de", "que", "a"
#: are left out on purpose). Accent-folded like the text.
_STOPWORDS: dict[str, frozenset[str]] = {
    "es": frozenset(
        """el la los las del y en por con una un es al lo como pero sus le ya este porque
        esta entre cuando muy sin sobre tambien hasta hay donde quien desde todo nos durante
        todos uno les ni otros ese eso ellos esto mi antes algunos unos yo otro otras otra
        tanto esa estos mucho quienes nada muchos cual poco ella estar estas algunas algo
        nosotros hola buenas buenos dias gracias tienen quiero necesito ustedes os vosotros
        su sus pueden puede hacen estoy estamos somos soy hace ayer nuestro nuestra usted
        mas tengo queremos podrian saludos""".split()
    ),
    "en": frozenset(
        """the and to of in is it you that for on with this are be at have i we your our my
        not can do does what how please hi hello thanks would could will from there they
        an or but if was were has had been just any some about when where who which their
        its me us them dont cant im hey dear team can't need want""".split()
    ),
    "pt": frozenset(
        """o os um uma em com nao do da dos das no na nos nas ao pelo pela isso voce voces
        tem sao meu minha seu sua obrigado obrigada ola bom dia gostaria gostariamos
        fizeram podem vou quero queremos tambem ja so ate depois sem mesmo aos esse essa
        ele ela eles elas mais muito estou estamos onde fica""".split()
    ),
}

_STOPWORD_LANGS: dict[str, tuple[str, ...]] = {}
for _lang, _words in _STOPWORDS.items():
    for _w in _words:
        _STOPWORD_LANGS[_w] = (*_STOPWORD_LANGS.get(_w, ()), _lang)

#: Characters only one of the three languages writes.
_LANG_CHARS = {"es": "ñ¿¡", "pt": "ãõçê"}

def detect_language(text: str, default: str = "es") -> str:
    """es, en or pt by counting language-specific stopwords (and letters like ñ or ã)."""
    return detect_from_tokens(text, WORD_RE.findall(fold(text)), default)


def detect_from_tokens(text: str, tokens: list[str], default: str) -> str:
    """:func:`detect_language` when the folded word tokens are already at hand."""
    scores = dict.fromkeys(_STOPWORDS, 0.0)
    for tok in tokens:
        for lang in _STOPWORD_LANGS.get(tok, ()):
            scores[lang] += 1.0
    for lang, chars in _LANG_CHARS.items():
        for c in chars:
            if c in text:
                scores[lang] += 2.0 * text.lower().count(c)
    best = max(scores.values())
    if best <= 0:
        return default
    winners = [lang for lang, s in scores.items() if s == best]
    if len(winners) == 1:
        return winners[0]
    return default if default in winners else winners[0]
