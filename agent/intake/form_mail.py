"""Website form notifications: the mail a site sends when a visitor fills in its form.

The mail comes from the site or the form service (``wordpress@site``, ``noreply@``,
``mailer@shopify.com``, ``www-data@server``), and the visitor is in ``Reply-To`` or
only in the body as labelled fields. ``read_notification`` recognises such a mail
and reads the visitor's contact from it; ``email_parse`` then makes the visitor
the lead. What counts as a notification (any one of):

* a sender listed in ``inbox.form_senders``;
* a site-like sender (our own address or domain, a no-reply, system or form-service
  address) with a usable human ``Reply-To``, a body of contact fields, or a
  form-tool marker;
* a form-tool marker (footer phrase, PHP mailer header, notification subject) with
  a body of contact fields, whoever sent it.

A person's own mail has none of these: a signature with ``Phone:`` lines is not
enough without a site-like sender or a marker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message

from agent.core.loop_guard import HeaderView, inbound_skip_reason, is_no_reply_address, reply_block_reason
from agent.intake.addresses import is_valid_email, sender_matches
from agent.intake.form_fields import (
    CONTACT_KINDS,
    FieldsFound,
    fold,
    read_fields,
    read_html_fields,
)

__all__ = ["FormNotification", "is_boilerplate", "notification_guard", "read_notification"]

SHORT_MAX = 200
SUBJECT_MAX = 2_000
NO_MESSAGE = "(the form was sent without a message)"
BOILERPLATE_MAX = 300

_SITE_LOCAL = re.compile(
    r"^(?:wordpress|wp|www-?data|wwwrun|www|apache2?|nginx|httpd|php|web|webmaster|website|site|"
    r"forms?|formularios?|contact-?forms?|webforms?|mailer|notifications?|notify|submissions?|"
    r"form-?submissions?|cpanel|nobody|root)(?:[-_.+].*)?$",
    re.IGNORECASE,
)
_FORM_SERVICES = frozenset({
    "@shopify.com", "@wix.com", "@wixsite.com", "@squarespace.com", "@squarespace.info", "@webflow.com",
    "@webflow.io", "@jotform.com", "@typeform.com", "@formspree.io", "@netlify.com", "@wufoo.com",
    "@cognitoforms.com", "@getform.io", "@formsubmit.co", "@123formbuilder.com", "@formstack.com",
    "@weebly.com", "@godaddysites.com",
})
# Addresses that are never a person: reply tokens, list and bounce addresses.
_MACHINE_LOCAL = re.compile(
    r"^(?:reply|replies|notifications?|notify|listserv|majordomo|owner-.*|.*-(?:request|owner)|"
    r"mailer-daemon|postmaster)(?:[+].*)?$",
    re.IGNORECASE,
)
# Splits text into address-sized tokens (a regex that searches for addresses backtracks
# quadratically over a long run without one: hostile input must stay linear).
_NOT_ADDRESS = re.compile(r"[\s<>()\[\],;:\"'`]+")
ADDRESS_SCAN_MAX = 2_000
_URL = re.compile(r"https?://[^\s<>()\"']+", re.IGNORECASE)

# Footer and header lines of form tools (matched on folded text: lower case, no accents).
_BOILERPLATE = re.compile(
    r"^(?:"
    r"(?:this|the following) (?:e-?mail|message|notification) (?:was|has been) sent (?:from|via|through|by)\b"
    r"|this is a notification that a (?:contact )?form was submitted"
    r"|(?:este|el|esta) (?:mensaje|correo|e-?mail|notificacion) (?:se ha enviado|fue enviad[oa]|ha sido enviad[oa])"
    r"|(?:esta|este) (?:mensagem|e-?mail) foi enviad[ao]"
    r"|(?:sent|submitted|enviad[oa]|envio) (?:from|via|using|through|desde|por|pelo|pela|a traves de)\b"
    r"|\(sent via [^)]*\)$"
    r"|powered by\b"
    r"|you(?:'ve| have)? (?:received|got|have) (?:a )?new (?:message|submission|form submission|form entry|entry|lead)"
    r"|your (?:site|store|website|form)\b.{0,80}\breceived (?:a )?new (?:form )?submission"
    r"|(?:new|nuevo|nueva|novo|nova) (?:form |contact )?(?:submission|entry|message|mensaje|mensagem|envio|entrada|"
    r"contacto|contato|lead)\b(?: (?:from|for|on|de|desde|en|do|da|no|via|received)\b.*)?$"
    r"|(?:has|have) received a new"
    r"|(?:tienes|recibiste|has recibido|voce recebeu) (?:un |una |uma )?(?:nuevo |nueva |nova |novo )?"
    r"(?:mensaje|mensagem|envio)"
    r"|reply (?:directly )?to this (?:e-?mail|message)"
    r"|(?:responde|responda) (?:directamente )?(?:a )?este (?:correo|mensaje|e-?mail)"
    r"|(?:view|see|manage|ver|gestionar|visualizar)\b.{0,30}\b(?:submission|submissions|entry|entries|record|"
    r"contact|envio|envios|entrada|entradas|registro|contacto|contato)\b"
    r"|mark (?:this |it )?as spam|marcar como spam"
    r"|submitted (?:on|by|values|at)\b|submitted \d|(?:enviado|enviada) (?:el|em|en) \d"
    r"|the results of this submission|someone (?:just )?submitted|here'?s what they had to say"
    r"|(?:this is an? )?(?:enquiry|inquiry) e-?mail via|esta es una consulta (?:por correo )?enviada desde"
    r"|esta e uma consulta (?:por e-?mail )?(?:enviada )?(?:atraves|a partir) de"
    r"|unsubscribe\b|to (?:stop|change|manage) (?:receiving )?(?:these )?(?:notifications|emails)"
    r")"
)
_TOOL_PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("contact-form-7", re.compile(
        r"sent from a contact form on|notification that a contact form was submitted on your website"
        r"|enviado desde un formulario de contacto en|enviad[ao] (?:a partir )?de um formulario de contato")),
    ("elementor", re.compile(r"powered by:? elementor")),
    ("wpforms", re.compile(r"wpforms")),
    ("shopify", re.compile(r"new message from your online store'?s contact form")),
    ("squarespace", re.compile(r"\(sent via squarespace\)|sent via form submission from")),
    ("webflow", re.compile(r"your site .{1,80} received a new form submission|webflow")),
    ("drupal-webform", re.compile(r"submitted values are")),
    ("joomla", re.compile(r"(?:enquiry|inquiry) e-?mail via|consulta por correo enviada desde")),
    ("wix", re.compile(r"wix forms|via wix")),
)
_SERVICE_TOOLS = {"@shopify.com": "shopify", "@wix.com": "wix", "@squarespace.com": "squarespace",
                  "@squarespace.info": "squarespace", "@webflow.com": "webflow", "@jotform.com": "jotform",
                  "@typeform.com": "typeform", "@formspree.io": "formspree", "@netlify.com": "netlify"}
_NOTIFICATION_SUBJECT = re.compile(
    r"^(?:\[[^\]]*\]\s*)?(?:new (?:form )?(?:entry|submission|message|lead|contact)|form submission|"
    r"(?:nuevo|nueva) (?:mensaje|envio|entrada|contacto)|(?:novo|nova) (?:mensagem|envio|contato)|"
    r"contact form|formulario de contact[oa]|got a new|(?:webform )?submission from)",
)
_PHP_HEADERS = ("x-php-originating-script", "x-php-script", "x-php-filename")
_PHP_MAILERS = re.compile(r"phpmailer|wordpress|wpmailsmtp|wp mail smtp", re.IGNORECASE)
# Every marker line holds one of these (lower case). Plain substring tests: a regex
# alternation over a whole body costs as much as the rest of the parse.
_MARKER_HINTS = ("form ", "form\n", "forms", "form:", "form.", "form,", "form'", "form\"", "formul",
                 "submission", "envio", "envío", "powered by", "elementor", "wpforms", "squarespace",
                 "webflow", "wix")
_CELLS = re.compile(r"<(?:td|th|dt|dd)\b", re.IGNORECASE)
_FORM_WORD = re.compile(r"\b(?:forms?|formulario|formularios|submission|submissions|envio)\b")
_FORM_NAME = re.compile(r"\b(?:form|formulario)\s+[\"'“‘«]([^\"'”’»]{1,100})[\"'”’»]", re.IGNORECASE)
_DAEMON_LOCALS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})
_LABELLED = re.compile(r"^[^:@\n]{1,60}:\s*\S")
_SITE_LINE = re.compile(r"contact form|formulario de contact[oa]|form (?:on|at) ")
_PERSON_KINDS = frozenset({"name", "first", "last", "email", "sender", "phone", "message"})


@dataclass(slots=True)
class FormNotification:
    """The visitor's contact as read from a notification; ``email`` is "" when none is readable."""

    email: str = ""
    name: str = ""
    phone: str | None = None
    company: str | None = None
    subject: str | None = None  # a subject the visitor filled in
    message: str = ""
    form: dict[str, str] = field(default_factory=dict)  # sender, subject, tool, name, page_url, site_url
    fields: dict[str, str] = field(default_factory=dict)  # the other fields (country, budget...)
    own_visitor: bool = False  # no visitor address but our own (the owner testing the form, a loop)
    configured: bool = False  # the sender is in inbox.form_senders


def is_boilerplate(line: str) -> bool:
    """A form tool's header or footer line (these are short: a long line is someone's text)."""
    return len(line) <= BOILERPLATE_MAX and bool(_BOILERPLATE.match(fold(line).lstrip("-–—*•·> ")))


def _one_line(value: str, limit: int) -> str:
    return " ".join(value.split())[:limit]


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def _org(address: str) -> str:
    """The last two labels of an address's domain: a rough 'same organisation' key."""
    return ".".join(_domain_of(address).split(".")[-2:])


def _site_like(address: str, own_addresses: frozenset[str], own_domains: frozenset[str]) -> bool:
    addr = address.strip().lower()
    local = addr.rpartition("@")[0]
    return (addr in own_addresses or _domain_of(addr) in own_domains or is_no_reply_address(addr)
            or bool(_SITE_LOCAL.match(local)) or sender_matches(addr, _FORM_SERVICES))


def _usable(address: str, form_sender: str, own_addresses: frozenset[str]) -> bool:
    """A visitor address: valid, a person's, not ours, not the form's own sender."""
    addr = address.strip().lower()
    return (is_valid_email(addr) and addr != form_sender.strip().lower() and addr not in own_addresses
            and not is_no_reply_address(addr) and not _MACHINE_LOCAL.match(addr.rpartition("@")[0]))


def _email_in(value: str) -> str | None:
    """The first valid address in the first ``ADDRESS_SCAN_MAX`` characters of a field value."""
    head = value[:ADDRESS_SCAN_MAX]
    if "@" not in head:
        return None
    for token in _NOT_ADDRESS.split(head.replace("mailto:", " ")):
        if "@" in token:
            candidate = token.strip(".")
            if is_valid_email(candidate):
                return candidate
    return None


def _tool(from_addr: str, text: str, subject: str, header: Callable[[str], str | None]) -> str | None:
    for domain, name in _SERVICE_TOOLS.items():  # a form service's own address says it all
        if sender_matches(from_addr, frozenset({domain})):
            return name
    folded = fold(text)
    for name, pattern in _TOOL_PHRASES:
        if pattern.search(folded):
            return name
    if any(header(h) is not None for h in _PHP_HEADERS):
        return "php"
    return "wpforms" if fold(subject).startswith("new entry: ") else None


def _has_marker(found: FieldsFound, subject: str, header: Callable[[str], str | None]) -> bool:
    """A form tool's footer or header line, a notification subject, or a PHP script's headers."""
    for line in found.noise:
        folded = fold(line)
        if _FORM_WORD.search(folded) or any(p.search(folded) for _, p in _TOOL_PHRASES):
            return True
    if _NOTIFICATION_SUBJECT.match(fold(subject)):
        return True
    if any(header(h) is not None for h in _PHP_HEADERS):
        return True
    return bool(_PHP_MAILERS.search(header("x-mailer") or ""))


def _may_have_marker(body: str, html_parts: Iterable[str], subject: str,
                     header: Callable[[str], str | None]) -> bool:
    """A cheap first look for ``_has_marker``: False means no marker can be found."""
    if _NOTIFICATION_SUBJECT.match(fold(subject)) or any(header(h) is not None for h in _PHP_HEADERS):
        return True
    if _PHP_MAILERS.search(header("x-mailer") or ""):
        return True
    for text in (body, *html_parts):
        lowered = text.lower()
        if any(hint in lowered for hint in _MARKER_HINTS):
            return True
    return False


def _best_fields(body: str, html_parts: Iterable[str]) -> FieldsFound:
    found = read_fields(body, is_boilerplate)
    best = len(found.kinds() & CONTACT_KINDS)
    for html in html_parts:
        if not _CELLS.search(html):
            continue  # no table or definition list: the text lines already hold it all
        table = read_html_fields(html)
        kinds = {f.kind for f in table} & CONTACT_KINDS
        if len(kinds) >= max(best, 2):
            # A table says which cell is a label; the text lines only guess. Free lines
            # that are neither a label nor a value of the table stay free.
            taken = {fold(t) for f in table for t in (f.label, *f.value.split("\n"))}
            free = [ln for ln in found.free if fold(ln).rstrip(":") not in taken]
            found, best = FieldsFound(fields=table, free=free, noise=found.noise), len(kinds)
    if not found.kinds() & CONTACT_KINDS:
        # No contact field: "Label: value" lines were the visitor's own text.
        free = [f"{f.label}: {f.value}".strip() for f in found.fields if f.kind == "other"]
        found = FieldsFound([f for f in found.fields if f.kind != "other"], found.free + free, found.noise)
    return found


def read_notification(
    *,
    from_pairs: list[tuple[str, str]],
    reply_to: list[tuple[str, str]],
    subject: str,
    header: Callable[[str], str | None],
    body: str,
    html_parts: Iterable[str] = (),
    own_addresses: frozenset[str] = frozenset(),
    own_domains: frozenset[str] = frozenset(),
    form_senders: frozenset[str] = frozenset(),
) -> FormNotification | None:
    """The visitor's contact when this mail is a form notification, else None."""
    # The first valid From; else whatever From says ("www-data@server" has no dotted domain).
    from_addr = next((a.strip() for _, a in from_pairs if is_valid_email(a.strip())), "") or next(
        (a.strip() for _, a in from_pairs if "@" in a), "")
    own = frozenset(a.lower() for a in own_addresses)
    domains = frozenset(d.lower().lstrip("@").rstrip(".") for d in own_domains)
    if from_addr.rpartition("@")[0].lower() in _DAEMON_LOCALS:
        return None  # a bounce quoting a notification is still a bounce
    configured = bool(from_addr) and sender_matches(from_addr, form_senders)
    site = configured or (bool(from_addr) and _site_like(from_addr, own, domains))
    if not site and ("@" not in body or not _may_have_marker(body, html_parts, subject, header)):
        # A person's mail, the common case: without a site-like sender only a marker plus a
        # visitor address in the fields make a notification, so no field reading at all.
        return None
    human_reply = None
    if len(reply_to) == 1 and _usable(reply_to[0][1], from_addr, own):
        human_reply = reply_to[0]
    found = _best_fields(body, html_parts)
    contact_form = len(found.kinds() & _PERSON_KINDS) >= 2
    marker = _has_marker(found, subject, header)
    # A Reply-To in the sender's own organisation (noreply@saas -> support@saas) is the
    # sender's desk, not a visitor: alone, it is no sign of a form.
    visitor_reply = human_reply is not None and _org(human_reply[1]) != _org(from_addr)
    if not (configured or (site and (visitor_reply or contact_form or marker))):
        # Any sender (an SMTP plugin sends from the owner's own mailbox): a marker and
        # contact fields with a visitor address in them, so a person's signature never counts.
        visitor = any(_usable(_email_in(f.value) or "", from_addr, own)
                      for f in found.fields if f.kind in ("email", "sender"))
        if not (marker and contact_form and visitor):
            return None
    out = _contact(found, human_reply, from_addr, own, subject, _tool(from_addr, body, subject, header))
    out.configured = configured
    return out


def notification_guard(
    msg: Message, headers: HeaderView, form: FormNotification, auto_headers: dict[str, str],
    own_addresses: frozenset[str], own_domains: frozenset[str],
) -> tuple[str | None, bool]:
    """(skip reason, quarantine) for a recognised notification: the guards aim at the visitor.

    A sender the user listed in ``inbox.form_senders`` may mark its notifications
    ``Auto-Submitted: auto-generated`` (they are automatic by nature, and the reply goes
    to the visitor, not to it): that one header is then dropped from ``auto_headers``
    and every other check still applies. Without a readable visitor: quarantine
    (``form-without-contact``), or ``own-address`` when the only address typed is ours.
    """
    reason = inbound_skip_reason(msg, sender=form.email, own_addresses=own_addresses, own_domains=own_domains,
                                 headers=headers, notification=True)
    token = auto_headers.get("auto-submitted", "").split(";", 1)[0].strip().lower()
    if reason == "auto-submitted" and form.configured and token == "auto-generated":
        auto_headers.pop("auto-submitted")
        reason = reply_block_reason(form.email, auto_headers, own_addresses=own_addresses)
    if reason is None and not form.email:
        return ("own-address", False) if form.own_visitor else ("form-without-contact", True)
    return reason, False


def _only_contact(line: str, address: str) -> bool:
    if address.lower() not in line.lower() or len(line) > 160:
        return False
    rest = re.sub(re.escape(address), " ", line, flags=re.IGNORECASE)
    return len(re.sub(r"[<>()\[\]\"',;:]|mailto", " ", rest).split()) <= 4


def _contact(found: FieldsFound, human_reply: tuple[str, str] | None, from_addr: str,
             own: frozenset[str], subject: str, tool: str | None) -> FormNotification:
    out = FormNotification()
    first = last = ""
    messages: list[str] = []
    field_emails: list[tuple[str, str]] = []  # (address, display name from a "From:" field)
    labels_seen: dict[str, int] = {}
    for f in found.fields:
        value = f.value.strip()
        if not value:
            continue
        kind = f.kind
        if kind == "email":
            address = _email_in(value)
            if address:
                field_emails.append((address, ""))
        elif kind == "sender":
            address = _email_in(value)
            if address:
                display = value.replace(address, " ").replace("<", " ").replace(">", " ")
                field_emails.append((address, _one_line(display.replace("mailto:", " ").strip(' "\''), SHORT_MAX)))
        elif kind == "name" and not out.name:
            out.name = _one_line(value, SHORT_MAX)
        elif kind == "first" and not first:
            first = _one_line(value, SHORT_MAX)
        elif kind == "last" and not last:
            last = _one_line(value, SHORT_MAX)
        elif kind == "phone" and out.phone is None:
            out.phone = _one_line(value, SHORT_MAX)
        elif kind == "company" and out.company is None:
            out.company = _one_line(value, SHORT_MAX)
        elif kind == "subject" and out.subject is None:
            out.subject = _one_line(value, SUBJECT_MAX)
        elif kind == "message":
            messages.append(value)
        elif kind == "page" and "page_url" not in out.form:
            url = _URL.search(value)
            out.form["page_url"] = (url.group(0) if url else _one_line(value, 500))[:500]
        elif kind == "form" and "name" not in out.form:
            out.form["name"] = _one_line(value, SHORT_MAX)
        elif kind == "other":
            label = _one_line(f.label, 60)
            n = labels_seen[label] = labels_seen.get(label, 0) + 1
            out.fields[label if n == 1 else f"{label} ({n})"] = value[:2_000]
    if not out.name and (first or last):
        out.name = _one_line(f"{first} {last}", SHORT_MAX)
    typed = [a for a, _ in field_emails]  # what the visitor typed (a Reply-To of ours is the site's default)
    if human_reply is not None:
        out.email = human_reply[1].strip()
        display = _one_line(human_reply[0].strip().strip('"\''), SHORT_MAX)
        if display and display.lower() != out.email.lower():
            out.name = display
        elif not out.name:  # CF7's "From: Name <address>" line names the Reply-To address
            out.name = next((d for a, d in field_emails if d and a.lower() == out.email.lower()), "")
    else:
        # Email fields first, then an address in any other field ("Contact: ...").
        field_emails += [(a, "") for a in (_email_in(v) for v in out.fields.values()) if a]
        field_emails += [(a, "") for a in (_email_in(ln) for ln in found.free if _LABELLED.match(ln)) if a]
        for address, display in field_emails:
            if _usable(address, from_addr, own):
                out.email = address
                if display and not out.name:
                    out.name = display
                break
        else:
            out.own_visitor = any(a.strip().lower() in own for a in typed)
    # A line that only repeats the visitor ("Paula Reyes <paula@...>") is not their text.
    free = [ln for ln in found.free if not (out.email and _only_contact(ln, out.email))]
    message = "\n\n".join(m.strip() for m in messages if m.strip()) or "\n".join(free).strip()
    out.message = message
    out.form["sender"] = from_addr
    if subject:
        out.form["subject"] = subject[:SUBJECT_MAX]
    if tool:
        out.form["tool"] = tool
    for line in found.noise:
        named = _FORM_NAME.search(line)
        if named and "name" not in out.form:
            out.form["name"] = _one_line(named.group(1), SHORT_MAX)
    if "page_url" not in out.form:
        for line in found.noise:
            url = _URL.search(line)
            if url and _SITE_LINE.search(fold(line)):
                out.form["site_url"] = url.group(0)[:500]
                break
    return out
