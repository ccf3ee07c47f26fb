"""Evidence from one message: the rule entries that fired, and structural spam signals.

Structural signals do not depend on vocabulary: links (more for throw-away domains, shorteners and
credential-bait paths), money offered to the reader ("desde 99€", "win $1,000"), rates someone is
selling, huge sums, shouting, and gibberish. Their names go to ``Evidence.flags`` so the learned
layer can weigh them and ``leadbox classify --explain`` can show them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from agent.classifiers.rules import PHRASES, PREFIX_LENGTHS, PREFIXES, WORDS, Entry
from agent.classifiers.text import WORD_RE, fold
from agent.core.models import Category

#: Gibberish is only checked when the tables saw less than this much evidence for any category.
QUIET_SCORE = 4.0

_URL_RE = re.compile(
    r"(?:https?://|www\.)\S+|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|info|top|xyz|"
    r"club|online|site|ly|me|io|co|es|br|mx|ar|pt|biz|shop|win|click|link|live)(?:/\S*)?",
    re.IGNORECASE,
)
#: Throw-away TLDs, shorteners and credential-bait words inside a link.
_SHADY_URL_RE = re.compile(
    r"\.(?:top|xyz|club|online|site|biz|win|click|link|live|info)\b|bit\.ly|t\.me/|tinyurl|"
    r"(?:verif|login|secur|password|premio|resgat|prize|claim|pago|pay|account|bank|invoice|"
    r"factura|wallet|gift|bonus|winner|renov)[a-z-]*[./]",
    re.IGNORECASE,
)
_MONEY = r"(?:(?:us\s?)?[$€£]|r\$)\s?\d[\d.,]*|\d[\d.,]*\s?(?:[$€£]|usd|eur|euros?|dolares|reais)"
#: "from 99€", "starts at $299", "win $1,000": a price or prize offered to us.
_MONEY_OFFER_RE = re.compile(
    r"(?:desde|a partir de|from|starts at|starting at|only|solo|apenas|por|win|won|gana|ganhe|"
    r"earn|ganar|hasta|up to|sum of)\s+(?:" + _MONEY + r")",
    re.IGNORECASE,
)
#: "$15/hour", "4 USD la hora", "99€ al mes": a rate someone is selling us.
_MONEY_RATE_RE = re.compile(
    r"(?:" + _MONEY + r")\s*(?:usd\s*)?(?:/\s*(?:h|hr|hour|mes|month|mo)\b|per hour|per month|"
    r"an hour|a month|la hora|por hora|al mes|por mes|a hora|per week|a week|por semana|"
    r"a la semana|al dia|per day|a day)",
    re.IGNORECASE,
)
#: "$15 million", "US$ 12,500,000": sums no real lead mentions in a first contact.
_BIG_MONEY_RE = re.compile(r"\d\s*(?:million|millones|milhoes|mil millones)\b|\d{1,3}(?:[.,]\d{3}){2,}")
#: "error 500", "502 errors", "a 404 page": a customer quoting a failure.
_HTTP_ERROR_RE = re.compile(
    r"\b(?:error|errores|errors|erro|http)\s*(?:4|5)\d\d\b|\b(?:4|5)\d\d\s*(?:error|errors|errores|erro|page|pagina)",
)
_CONSONANT_RUN_RE = re.compile(r"[b-df-hj-np-tv-xz]{5}")
_DIGIT_RE = re.compile(r"\d")
_DOMAIN_HINT_RE = re.compile(r"[a-z0-9]\.[a-z]")
_LETTER_RE = re.compile(r"[^\W\d_]")
_UPPER_RE = re.compile(r"[A-ZÁÉÍÓÚÑÇÃÕÂÊÔÀÜ]")
_KEYBOARD_RE = re.compile("asd|sdf|dfg|fgh|ghj|hjk|jkl|qwe|zxc|xcv")
_VOWEL_RE = re.compile("[aeiouy]")


@lru_cache(maxsize=16384)  # words repeat across messages; a bool per word is cheap to keep
def is_gibberish(tok: str) -> bool:
    """A token nobody types on purpose: no vowels, long consonant runs, keyboard rows,
    or a chunk repeated ("qweqwe")."""
    if len(tok) < 4 or tok.isdigit():
        return False
    if len(set(tok)) <= 2:  # "aaaaaaa", "xdxdxd"
        return True
    # No vowel at all. (A vowel ratio under 0.2 used to count too, but it flagged "thanks",
    # "months", "skills": a lone "Thanks" became spam.)
    if _VOWEL_RE.search(tok) is None:
        return True
    if _KEYBOARD_RE.search(tok):
        return True
    half = len(tok) // 2
    if len(tok) % 2 == 0 and tok[:half] == tok[half:]:
        return True
    return _CONSONANT_RUN_RE.search(tok) is not None


@dataclass(slots=True)
class Evidence:
    """What the rule tables and structural checks saw in one message."""

    scores: dict[Category, float]
    fired: set[str]
    tokens: list[str]
    flags: list[str]


def rule_evidence(full: str) -> Evidence:
    """Run the rule tables and the structural checks over subject + message."""
    folded = fold(full)
    urls = _URL_RE.findall(folded) if ("//" in folded or _DOMAIN_HINT_RE.search(folded)) else []
    # Words inside links (".../login", "docs-...") say nothing about the writer's
    # intent and are judged structurally instead.
    tokens = WORD_RE.findall(_URL_RE.sub(" ", folded) if urls else folded)
    scores = dict.fromkeys(Category, 0.0)
    seen: set[str] = set()

    def hit(entries: list[Entry]) -> None:
        for entry in entries:
            if entry.key not in seen:
                seen.add(entry.key)
                scores[entry.category] += entry.weight

    n = len(tokens)
    for i, tok in enumerate(tokens):
        found = WORDS.get(tok)
        if found:
            hit(found)
        for k in PREFIX_LENGTHS:
            if k > len(tok):
                break
            found = PREFIXES.get(tok[:k])
            if found:
                hit(found)
        for rest, entry in PHRASES.get(tok, ()):
            end = i + 1 + len(rest)
            if end <= n and tuple(tokens[i + 1 : end]) == rest and entry.key not in seen:
                seen.add(entry.key)
                scores[entry.category] += entry.weight

    has_digit = _DIGIT_RE.search(folded) is not None
    # Gibberish only matters when the words said nothing else.
    check_gibberish = max(scores.values()) < QUIET_SCORE
    flags: list[str] = []
    scores[Category.SPAM] += structural_spam(
        full, folded, tokens, urls, has_digit, check_gibberish, flags
    )
    if has_digit and _HTTP_ERROR_RE.search(folded):
        scores[Category.SUPPORT] += 2.5
        flags.append("http_error")
    return Evidence(scores, seen, tokens, flags)


def structural_spam(
    raw: str, folded: str, tokens: list[str], urls: list[str], has_digit: bool,
    check_gibberish: bool, flags: list[str] | None = None,
) -> float:
    """Signals that do not depend on vocabulary (their names go to ``flags``)."""
    found: list[str] = [] if flags is None else flags
    score = 0.0
    if urls:
        score += 0.5
        found.append("url")
        if any(_SHADY_URL_RE.search(u) for u in urls):
            score += 2.0
            found.append("shady_url")
        if any(u.split("/")[0].count("-") >= 2 for u in (x.split("://")[-1] for x in urls)):
            score += 1.0
            found.append("hyphen_domain")
    if has_digit:
        if _MONEY_OFFER_RE.search(folded):
            score += 2.0
            found.append("money_offer")
        if _BIG_MONEY_RE.search(folded):
            score += 2.0
            found.append("big_money")
        if _MONEY_RATE_RE.search(folded):
            score += 2.0
            found.append("money_rate")
    if "!!" in raw or "$" in raw or "€" in raw:
        letters = _LETTER_RE.findall(raw)
        if len(letters) >= 20:
            upper = len(_UPPER_RE.findall(raw)) / len(letters)
            if upper > 0.7:
                score += 1.5
                found.append("shouting_money")
    if "!!!" in raw:
        score += 0.5
        found.append("bangs")
    alpha = [t for t in tokens if not t.isdigit()] if check_gibberish else []
    if alpha:
        gib = sum(1 for t in alpha if is_gibberish(t))
        if gib / len(alpha) >= 0.4 and gib >= 1:
            score += 5.0
            found.append("gibberish")
    return score
