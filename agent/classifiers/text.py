"""Text helpers shared by every classifier: accent folding, word tokens, summary and clip.

Why here: the local classifier, the LLM adapter (its fallback summary) and the trainer all need
the same folding and the same one-line summary, and none of them should import another's
adapter to get it.
"""

from __future__ import annotations

import re

# Accent folding via str.translate (much faster than unicodedata per message).
FOLD = str.maketrans(
    "áàâäãåéèêëíìîïóòôöõúùûüñçÁÀÂÄÃÅÉÈÊËÍÌÎÏÓÒÔÖÕÚÙÛÜÑÇ’‘`´",
    "aaaaaaeeeeiiiiooooouuuuncAAAAAAEEEEIIIIOOOOOUUUUNC''''",
)
WORD_RE = re.compile(r"[a-z0-9]+")
_SENTENCE_RE = re.compile(r"(?<=[.!?…])\s+|\n+")
_GREETING_RE = re.compile(
    r"^(?:hi there|hey there|hi team|hello team|hola equipo|olá equipe|ola equipe|good morning|"
    r"good afternoon|buenos dias|buenos días|buenas tardes|buenas noches|buen dia|buen día|"
    r"bom dia|boa tarde|boa noite|dear [^,.!]{0,30}|estimad[oa]s?(?:/a)?(?: [^,.!:]{0,20})?|"
    r"hola|hello|hi|hey|ola|olá|buenas|saludos|greetings)\b[\s,.!:;—–-]*",
    re.IGNORECASE,
)
SUMMARY_MAX = 200


def fold(text: str) -> str:
    """Lower-case and strip accents, so "Cotización" and "cotizacion" match one rule."""
    return text.translate(FOLD).lower().replace("'", "")


def summarize(text: str, limit: int = SUMMARY_MAX) -> str:
    """The first meaningful sentence, one line, at most ``limit`` characters.

    Why not generate one: the summary is shown in a sheet and a reply, so it
    must be faithful and in the writer's language; the writer's own first
    real sentence (greetings skipped) is both.
    """
    flat = text.strip()
    if not flat:
        return ""
    candidates = [s.strip() for s in _SENTENCE_RE.split(flat) if s and s.strip()]
    chosen = ""
    for sentence in candidates:
        stripped = _GREETING_RE.sub("", sentence).lstrip(" ,.;:—–-").rstrip(" ,;:—–-")
        if len(WORD_RE.findall(fold(stripped))) >= 3:
            chosen = stripped
            break
    if not chosen:
        chosen = _GREETING_RE.sub("", candidates[0]).lstrip(" ,.;:—–-").rstrip(" ,;:—–-") or candidates[0]
    chosen = " ".join(chosen.split())
    if chosen and chosen[0].islower():
        chosen = chosen[0].upper() + chosen[1:]
    return clip(chosen, limit)


def clip(text: str, limit: int = SUMMARY_MAX) -> str:
    """One line, at most ``limit`` characters, cut at a word boundary with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"
