"""Labelled fields of a website form notification: ``Label: value``, label line then
value line(s), HTML tables and definition lists, in Spanish, English and Portuguese.

``read_fields`` returns what it found as ``FormField``s (label, value, kind) plus the
lines that carried no label (``free``). It only reads; ``form_mail`` decides what a
mail is. Kinds: the contact parts (name, first, last, email, sender, phone,
company, subject, message), what describes the form (page, form) and what is
technical noise (tech); anything else is ``other``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

__all__ = ["CONTACT_KINDS", "FieldsFound", "FormField", "fold", "label_kind", "read_fields", "read_html_fields"]

MAX_FIELDS = 100
LABEL_MAX = 60
VALUE_MAX = 20_000

_KINDS: dict[str, tuple[str, ...]] = {
    "name": ("name", "full name", "nombre", "nombre completo", "nombre y apellido", "nombre y apellidos",
             "nome", "nome completo", "contact name", "nombre de contacto", "nome de contato"),
    "first": ("first name", "firstname", "given name", "primer nombre", "primeiro nome", "nombre de pila"),
    "last": ("last name", "lastname", "surname", "family name", "apellido", "apellidos", "sobrenome",
             "ultimo nome"),
    "email": ("email", "e-mail", "e mail", "mail", "email address", "e-mail address", "correo", "correo electronico",
              "direccion de correo", "direccion de correo electronico", "direccion de email", "endereco de e-mail",
              "endereco de email", "contact email", "email de contacto", "reply to", "reply-to"),
    "sender": ("from", "de", "remitente", "remetente", "sender"),
    "phone": ("phone", "phone number", "telephone", "tel", "mobile", "mobile phone", "cell", "cell phone",
              "contact number", "telefono", "numero de telefono", "movil", "celular", "whatsapp", "telefone",
              "numero de telefone", "telemovel"),
    "company": ("company", "company name", "organization", "organisation", "business", "business name",
                "empresa", "nombre de la empresa", "compania", "organizacion", "negocio", "nome da empresa",
                "companhia", "organizacao"),
    "subject": ("subject", "asunto", "assunto", "topic", "tema", "motivo", "reason for contact"),
    "message": ("message", "mensaje", "mensagem", "message body", "cuerpo del mensaje", "corpo da mensagem",
                "comment", "comments", "comentario", "comentarios", "comment or message", "comentario o mensaje",
                "comentario ou mensagem", "inquiry", "enquiry", "consulta", "details", "detalles", "detalhes",
                "question", "pregunta", "pergunta", "how can we help", "how can we help you",
                "en que podemos ayudarte", "como podemos ayudarte", "como podemos ajudar", "body", "notes",
                "note", "nota", "notas", "observaciones", "observacoes", "description", "descripcion",
                "descricao", "project details", "request", "solicitud", "pedido", "texto", "text"),
    "page": ("page url", "page", "url", "pagina", "referrer", "referer", "source url", "form url",
             "url de la pagina", "url da pagina", "pagina de origen", "submitted from", "sent from page",
             "embed url", "site url", "website url"),
    "form": ("form", "form name", "form title", "formulario", "nombre del formulario", "nome do formulario"),
    "tech": ("user agent", "user-agent", "agente de usuario", "navegador", "browser", "ip", "ip address",
             "remote ip", "direccion ip", "endereco ip", "date", "fecha", "data", "time", "hora",
             "date and time", "fecha y hora", "data e hora", "timestamp", "powered by", "submitted",
             "submitted on", "submission date", "entry id", "entry", "form id", "site", "sitio",
             "language", "idioma", "country code", "consent", "gdpr", "acceptance", "captcha",
             "recaptcha", "honeypot", "submission id", "id"),
}
_LABEL_KIND = {label: kind for kind, labels in _KINDS.items() for label in labels}
CONTACT_KINDS = frozenset({"name", "first", "last", "email", "sender", "phone", "company", "subject", "message"})
_PREFIXES = ("your ", "tu ", "su ", "seu ", "sua ", "o seu ", "a sua ", "votre ")

# "Label: value" — a short label (letters first, no URL, address or sentence punctuation).
_COLON = re.compile(r"^[ \t>*•·-]*\**((?:[^\W\d_]|[¿¡])[^:：\n]{0,59}?)\**\s*[:：]\s*(.*)$")  # label: LABEL_MAX chars
_SEPARATOR = re.compile(r"^\s*(?:--|-{3,}|—+|_{3,}|={3,}|\*{3,}|~{3,})\s*$")


@dataclass(slots=True)
class FormField:
    label: str
    value: str
    kind: str


@dataclass(slots=True)
class FieldsFound:
    fields: list[FormField] = field(default_factory=list)
    free: list[str] = field(default_factory=list)  # lines that carried no label
    noise: list[str] = field(default_factory=list)  # form-tool footer and header lines, left out

    def kinds(self) -> set[str]:
        return {f.kind for f in self.fields if f.value}


def fold(text: str) -> str:
    """Lower case, no accents, single spaces: how labels are compared."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())


def label_kind(label: str) -> str | None:
    """The kind of a label when it is a known one, else None."""
    key = fold(label).strip(" *:?¿¡!.()[]")
    key = re.sub(r"\s*\((?:required|obligatorio|requerido|obrigatorio|optional|opcional)\)$", "", key)
    key = key.strip(" *")
    if key in _LABEL_KIND:
        return _LABEL_KIND[key]
    for prefix in _PREFIXES:
        if key.startswith(prefix) and key[len(prefix):] in _LABEL_KIND:
            return _LABEL_KIND[key[len(prefix):]]
    return None


def _label_like(text: str) -> bool:
    """Short, starts with a letter, no sentence punctuation inside: could be a form label."""
    text = text.strip().rstrip(":：").strip("*").strip()
    if (not text or text.endswith((".", ",", ";", "!")) or len(text) > LABEL_MAX or len(text.split()) > 6
            or not (text[0].isalpha() or text[0] in "¿¡")):
        return False
    return not any(mark in text for mark in (". ", "http", "@", "<", ">", "/", ",", ";", "!"))


class _Reader:
    """One pass over the lines: fields open at a label and take the lines that follow."""

    def __init__(self, lines: list[str], boilerplate: Callable[[str], bool]) -> None:
        self.lines = lines
        self.boilerplate = boilerplate
        self.found = FieldsFound()
        self.current: FormField | None = None
        self.blank_after_value = False
        self.layout_blocks = False  # labels alone on their line, values below: unknown labels count too

    def _open(self, label: str, value: str, kind: str) -> None:
        self._close()
        self.current = FormField(label.strip().strip("*").strip()[:LABEL_MAX], value.strip(), kind)
        self.blank_after_value = False

    def _close(self) -> None:
        cur = self.current
        if cur is not None and len(self.found.fields) < MAX_FIELDS:
            cur.value = cur.value.strip()[:VALUE_MAX]
            self.found.fields.append(cur)
        self.current = None

    def _bare_label(self, i: int) -> str | None:
        """The kind of line i when it is a label alone on its line, its value on the next line(s)."""
        line = self.lines[i].strip()
        if not _label_like(line):
            return None
        nxt = self._next_text(i)
        if nxt is None:
            return None
        kind = label_kind(line)
        if kind is None:
            # An unknown label counts in the label-line layout only: preceded by a blank
            # line (or the start), its value right below it.
            prev_blank = i == 0 or not self.lines[i - 1].strip()
            if not (prev_blank and self.layout_blocks):
                return None
            kind = "other"
        nxt_line = self.lines[nxt].strip()
        below = _COLON.match(nxt_line)
        if label_kind(nxt_line) is not None or (below is not None and label_kind(below.group(1)) is not None):
            return None  # a label right below: this one is empty or not a label
        return kind

    def _next_text(self, i: int) -> int | None:
        """Index of the next non-blank line after i, looking past at most one blank line."""
        for j in (i + 1, i + 2):
            if j < len(self.lines) and self.lines[j].strip():
                return j
        return None

    def read(self) -> FieldsFound:
        known_bare = sum(1 for i in range(len(self.lines)) if self._known_bare(i))
        self.layout_blocks = known_bare >= 2
        for i, raw in enumerate(self.lines):
            line = raw.rstrip()
            text = line.strip()
            cur = self.current
            if not text:
                if cur is not None and cur.value:
                    if cur.kind == "message":
                        cur.value += "\n"
                    self.blank_after_value = True
                continue
            if _SEPARATOR.match(text) or self.boilerplate(text):
                self._close()
                if not _SEPARATOR.match(text):
                    self.found.noise.append(text)
                continue
            m = _COLON.match(text)
            if m is not None and _label_like(m.group(1)):
                kind = label_kind(m.group(1))
                in_message = cur is not None and cur.kind == "message"
                if kind is not None or not in_message:
                    self._open(m.group(1), m.group(2), kind or "other")
                    continue
            if cur is not None and not cur.value:  # the value below a label line
                cur.value = text
                continue
            if cur is None or cur.kind != "message" or self.blank_after_value:
                kind = self._bare_label(i)
                if kind is not None:
                    self._open(text.rstrip(":："), "", kind)
                    continue
            if cur is not None and (cur.kind == "message" or not self.blank_after_value or not cur.value):
                cur.value = f"{cur.value}\n{text}" if cur.value else text
                self.blank_after_value = False
                continue
            self._close()
            self.found.free.append(text)
        self._close()
        return self.found

    def _known_bare(self, i: int) -> bool:
        line = self.lines[i].strip()
        return _label_like(line) and label_kind(line) in CONTACT_KINDS and self._next_text(i) is not None


def read_fields(text: str, boilerplate: Callable[[str], bool]) -> FieldsFound:
    """Fields of a plain-text body; lines matching ``boilerplate`` end a field and are dropped."""
    return _Reader(text.split("\n"), boilerplate).read()


# ----------------------------------------------------------------------- HTML


class _Cells(HTMLParser):
    """Rows of table cells and dt/dd pairs; text of nested tables stays in the inner cell."""

    _BREAKS = frozenset({"br", "p", "div", "li"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []  # finished rows, in document order
        self._tables: list[list[list[str]]] = []  # open tables: their open rows
        self._cell: list[list[str] | None] = []  # per open table: the open cell's parts
        self._skip = 0
        self._dl: list[tuple[str, list[str]]] = []  # open dt/dd: tag and parts
        self.pairs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
        elif tag == "table":
            self._tables.append([])
            self._cell.append(None)
        elif tag == "tr" and self._tables:
            self._tables[-1].append([])
        elif tag in ("td", "th") and self._tables:
            if not self._tables[-1]:
                self._tables[-1].append([])
            self._cell[-1] = []
            self._tables[-1][-1].append("")
        elif tag in ("dt", "dd"):
            self._end_dl()
            self._dl.append((tag, []))
        elif tag in self._BREAKS:
            self._text("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self._text("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th") and self._tables:
            self._end_cell()
        elif tag == "tr" and self._tables:
            self._end_cell()
            if self._tables[-1]:
                self.rows.append([c.strip() for c in self._tables[-1].pop()])
        elif tag == "table" and self._tables:
            self._end_cell()
            for row in self._tables.pop():
                self.rows.append([c.strip() for c in row])
            self._cell.pop()
        elif tag in ("dt", "dd", "dl"):
            self._end_dl()

    def _end_cell(self) -> None:
        parts = self._cell[-1] if self._cell else None
        if parts is not None and self._tables and self._tables[-1]:
            self._tables[-1][-1][-1] = "".join(parts)
            self._cell[-1] = None

    def _end_dl(self) -> None:
        if not self._dl:
            return
        tag, parts = self._dl.pop()
        text = "".join(parts).strip()
        if tag == "dt":
            self.pairs.append((text, "\0"))  # a label waiting for its dd
        elif self.pairs and self.pairs[-1][1] == "\0":
            self.pairs[-1] = (self.pairs[-1][0], text)

    def _text(self, data: str) -> None:
        if self._skip:
            return
        if self._dl:
            self._dl[-1][1].append(data)
        elif self._cell and self._cell[-1] is not None:
            self._cell[-1].append(data)

    def handle_data(self, data: str) -> None:
        self._text(data)


def _squash(text: str) -> str:
    lines = [" ".join(ln.split()) for ln in text.replace("\xa0", " ").split("\n")]
    return "\n".join(ln for ln in lines if ln).strip()


def read_html_fields(html_text: str) -> list[FormField]:
    """Label/value pairs of an HTML body: two-cell rows, label row then value row, dt/dd."""
    parser = _Cells()
    try:
        parser.feed(html_text)
        parser.close()
    except Exception:  # noqa: BLE001 - HTMLParser can choke on pathological input
        return []
    pairs: list[tuple[str, str]] = [(a, b) for a, b in parser.pairs if b != "\0"]
    rows = [[_squash(c) for c in row if _squash(c)] for row in parser.rows]

    def label_row(i: int, known: bool) -> bool:
        """Row i is a label alone, row i + 1 its value alone (Wix, Gravity Forms)."""
        if not (len(rows[i]) == 1 and i + 1 < len(rows) and len(rows[i + 1]) == 1 and _label_like(rows[i][0])):
            return False
        return label_kind(rows[i + 1][0]) is None and (not known or label_kind(rows[i][0]) is not None)

    # With two known labels in that layout, the unknown ones in it are labels too ("Service Needed").
    alternating = sum(1 for i in range(len(rows)) if label_row(i, known=True)) >= 2
    i = 0
    while i < len(rows):
        row = rows[i]
        if len(row) == 2 and _label_like(row[0]):
            pairs.append((row[0], row[1]))
        elif label_row(i, known=not alternating):
            pairs.append((row[0], rows[i + 1][0]))
            i += 1
        i += 1
    out: list[FormField] = []
    for label, value in pairs[:MAX_FIELDS]:
        label = label.strip().rstrip(":：").strip()
        if label and value.strip():
            out.append(FormField(label[:LABEL_MAX], _squash(value)[:VALUE_MAX], label_kind(label) or "other"))
    return out
