"""Website form notifications: the visitor, not the website, becomes the lead.

The mails in tests/data/emails/forms were written from the default notification
formats of each tool (Contact Form 7 es/en, WPForms, Elementor, Shopify,
Squarespace, Webflow, Wix, a PHP ``mail()`` script, an HTML table, a definition
list; then Gravity Forms, Ninja Forms, Formspree, Netlify, Drupal Webform, Joomla,
HubSpot and a hand-made PHP HTML form, written before the reader saw them) with
their encodings (RFC 2047 headers, quoted-printable, base64, 8-bit Latin-1 and
Windows-1252, HTML-only bodies), plus controls that must stay what they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import build_parser
from agent.config import load_config
from agent.core.loop_guard import reply_block_reason
from agent.core.models import Category, Lead, State
from agent.core.replies import Templates, compose_reply
from agent.errors import ConfigError
from agent.intake.addresses import is_valid_email
from agent.intake.email_parse import ParsedEmail, parse_email, to_lead_in

ROOT = Path(__file__).resolve().parent.parent
FORMS = ROOT / "tests" / "data" / "emails" / "forms"
OWN = frozenset({"leads@example.com"})
OWN_DOMAINS = frozenset({"example.com"})


def parse(name: str, **kw: Any) -> ParsedEmail:
    return parse_email((FORMS / name).read_bytes(), own_addresses=OWN, own_domains=OWN_DOMAINS, **kw)


# file: (email, name, subject, start of message, phone, company, tool)
TOOLS: dict[str, tuple[str, str, str, str, str | None, str | None, str | None]] = {
    "cf7_es.eml": ("laura.gomez@cliente.example", "Laura Gómez", "Presupuesto para el taller",
                   "Hola, necesito presupuesto para 30 taladros", None, None, "contact-form-7"),
    "cf7_en.eml": ("john.carter@buyer.example", "John Carter", "Bulk order",
                   "We'd like 200 units of the X200 drill", None, None, "contact-form-7"),
    "wpforms.eml": ("pedro@alves.example", "Pedro Alves", "", "Olá, gostaria de um orçamento",
                    "+351 912 345 678", None, "wpforms"),
    "elementor.eml": ("ana@cine.example", "Ana Ruiz", "", "¿Tienen la cámara X-T5 en stock?", None, None,
                      "elementor"),
    "shopify.eml": ("marta@vidal.example", "Marta Vidal", "", "Quería saber si hacéis envíos a Canarias",
                    "+34 600 111 222", None, "shopify"),
    "squarespace.eml": ("tom@brightdesign.example", "Tom Becker", "Website redesign",
                        "We need a new website for our bakery chain", None, None, "squarespace"),
    "webflow.eml": ("keiko@tanaka.example", "Keiko Tanaka", "", "We want to automate our order intake.", None,
                    "Tanaka Foods", "webflow"),
    "wix.eml": ("sofia@mendez.example", "Sofía Méndez", "", "Busco mantenimiento mensual", "+52 55 1234 5678",
                None, "wix"),
    "php_mail.eml": ("raul.ortega@correo.example", "Raúl Ortega", "", "Necesito 40 metros de tarima", "611 222 333",
                     "Ortega Reformas", "php"),
    "html_table.eml": ("carla@soto.example", "Carla Soto", "", "Quiero cotizar 3 sillas de oficina.",
                       "+56 9 1234 5678", None, None),
    "dl_pt.eml": ("joao@silva.example", "João Silva", "", "Preciso de 12 cadeiras", None, "Silva & Filhos", None),
    # Second batch, written from the tools' defaults before the reader ever saw them. First run:
    # 7 of 8 visitors right (Drupal's was missed: the site's admin@ address became the lead) and
    # 3 messages kept boilerplate (Formspree, Joomla, HubSpot footers); both fixed afterwards.
    "gravity_forms.eml": ("olivia@brown.example", "Olivia Brown", "", "Looking for an estimate", "(555) 201-3344",
                          None, None),
    "ninja_forms.eml": ("jane@park.example", "Jane Park", "", "Do you offer group lessons", None, None, None),
    "formspree.eml": ("lucas@pereira.example", "Lucas Pereira", "", "Oi, vocês fazem identidade visual", None, None,
                      "formspree"),
    "netlify.eml": ("dario@rossi.example", "Dario Rossi", "", "Can you build a small shop", None, None, "netlify"),
    "drupal_webform.eml": ("mia@wong.example", "Mia Wong", "Training quote", "We need a two-day course", None, None,
                           "drupal-webform"),
    "joomla_contact.eml": ("paula@reyes.example", "Paula Reyes", "", "Somos un grupo de 20 personas", None, None,
                           "joomla"),
    "hubspot.eml": ("hannah@schmidt.example", "Hannah Schmidt", "", "We'd like a demo next week.", None,
                    "Schmidt GmbH", None),
    "php_html_es.eml": ("lucia@fernandez.example", "Lucía Fernández", "", "¿Tenéis disponibilidad", "622 333 444",
                        None, None),
}
# Never in a lead's message: form boilerplate and technical fields.
NOISE = ("http", "User Agent", "Mozilla", "Remote IP", "203.0.113.7", "198.51.100.23", "192.0.2.55", "Powered by",
         "Elementor", "formulario de contacto en", "contact form was submitted", "Sent via", "Sent from", "View ",
         "Country Code", "Date:", "Time:", "Budget", "Instagram", "How did you hear", "@", "Nombre:", "Email",
         "Submitted", "spam", "had to say", "enviada desde", "Service Needed", "Kitchen remodel", "employees",
         "Navegador", "Paula Reyes")


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_each_tool_notification_becomes_a_lead_of_the_visitor(name: str) -> None:
    email, person, subject, start, phone, company, tool = TOOLS[name]
    p = parse(name)
    assert (p.skip_reason, p.quarantine) == (None, False)
    assert (p.email, p.name, p.subject) == (email, person, subject)
    assert p.message.startswith(start), p.message
    assert (p.phone, p.company) == (phone, company)
    assert p.form is not None and p.form.get("tool") == tool
    sender = str(message_from_bytes((FORMS / name).read_bytes(), policy=policy.compat32)["From"])
    assert p.form["sender"] in sender
    for noise in NOISE:
        assert noise not in p.message, (noise, p.message)
    assert p.in_reply_to is None and p.references is None
    lead = to_lead_in(p)
    assert lead.email_norm == email.lower() and lead.intake == "email"
    assert lead.metadata["form"]["sender"] == p.form["sender"]
    assert (lead.phone, lead.company, lead.subject) == (phone, company, subject or None)


def test_other_fields_and_page_go_to_metadata_never_the_message() -> None:
    webflow = to_lead_in(parse("webflow.eml"))
    assert webflow.metadata["form_fields"] == {"Budget": "10.000 - 20.000 EUR"}
    assert webflow.metadata["form"]["name"] == "Email Form"
    assert to_lead_in(parse("html_table.eml")).metadata["form_fields"] == {"¿Cómo nos conociste?": "Instagram"}
    assert parse("wpforms.eml").form_fields == {"How did you hear about us?": "Google"}
    assert parse("gravity_forms.eml").form_fields == {"Service Needed": "Kitchen remodel"}
    assert parse("hubspot.eml").form_fields == {"Number of employees": "50-200"}
    assert parse("hubspot.eml").form == {"name": "Demo request", "page_url": "https://saasco.example/demo",
                                         "sender": "noreply@notifications.hubspot.com",
                                         "subject": "New form submission on saasco.example"}
    assert parse("elementor.eml").form["page_url"] == "https://filmshop.example/contacto/"  # type: ignore[index]
    assert parse("html_table.eml").form["page_url"] == "https://mitienda.example/contacto"  # type: ignore[index]
    assert parse("cf7_es.eml").form["site_url"] == "https://example.com"  # type: ignore[index]
    # The notification's own subject is recorded on the form, not made the visitor's.
    shopify = parse("shopify.eml")
    assert shopify.subject == "" and shopify.form["subject"].startswith("New customer message")  # type: ignore[index]
    assert "New customer message" not in shopify.clean_text
    assert parse("cf7_es.eml").clean_text.startswith("Presupuesto para el taller\n\nHola")


def test_notification_without_a_visitor_address_is_quarantined() -> None:
    p = parse("form_without_contact.eml")
    assert (p.skip_reason, p.quarantine, p.email) == ("form-without-contact", True, "")
    assert "wordpress@example.com" not in (p.email, p.name)


def test_form_senders_config_catches_a_format_detection_misses() -> None:
    plain = parse("custom_sender.eml")
    assert plain.form is None and plain.email == "avisos@hotelmar.example"  # undetected: a normal mail
    for senders in ({"@hotelmar.example"}, {"avisos@hotelmar.example"}, {"@example"}):
        p = parse("custom_sender.eml", form_senders=frozenset(senders))
        assert (p.email, p.skip_reason) == ("irene@campos.example", None), senders
        assert p.form is not None and p.form["sender"] == "avisos@hotelmar.example"
    assert parse("custom_sender.eml", form_senders=frozenset({"@otherhotel.example"})).form is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [("control_newsletter.eml", "precedence-bulk"), ("control_github.eml", "mailing-list")],
)
def test_controls_lists_and_service_notifications_stay_skipped(name: str, reason: str) -> None:
    p = parse(name)
    assert (p.skip_reason, p.quarantine) == (reason, False)


def test_control_a_persons_own_mail_is_not_a_form() -> None:
    p = parse("control_person.eml")
    assert p.form is None and p.skip_reason is None
    assert (p.email, p.subject) == ("ana@torres.example", "Consulta por precios")
    assert "Teléfono: +34 911 000 111" in p.message  # the whole mail, signature included


def _notification(*, frm: str, reply_to: str | None = None, body: str, subject: str = "New form entry",
                  extra: dict[str, str] | None = None, html: bool = False) -> bytes:
    m = EmailMessage()
    m["From"] = frm
    m["To"] = "leads@example.com"
    m["Subject"] = subject
    m["Message-ID"] = "<n-1@example.com>"
    if reply_to is not None:
        m["Reply-To"] = reply_to
    for k, v in (extra or {}).items():
        m[k] = v
    m.set_content(body, subtype="html" if html else "plain")
    return m.as_bytes()


def test_guards_aim_at_the_visitor_not_at_the_website() -> None:
    body = "Name: Eva Luna\nEmail: eva@luna.example\nMessage: Hola, quiero precios.\n"
    # Our own address and domain sending, our own Message-ID domain: expected for a site on our domain.
    p = parse_email(_notification(frm="leads@example.com", body=body), own_addresses=OWN, own_domains=OWN_DOMAINS)
    assert (p.email, p.skip_reason) == ("eva@luna.example", None)
    # The visitor's address is ours: a loop, skipped.
    own_visitor = body.replace("eva@luna.example", "leads@example.com")
    p = parse_email(_notification(frm="wordpress@site.example", body=own_visitor), own_addresses=OWN)
    assert (p.skip_reason, p.quarantine) == ("own-address", False) and p.email != "leads@example.com"
    # A no-reply From is still skipped when the mail is automatic, bulk or a list.
    for header, value, reason in (("Auto-Submitted", "auto-generated", "auto-submitted"),
                                  ("Precedence", "bulk", "precedence-bulk"),
                                  ("List-Id", "<x.example>", "mailing-list")):
        raw = _notification(frm="noreply@site.example", body=body, extra={header: value})
        assert parse_email(raw).skip_reason == reason


@pytest.mark.parametrize(
    "reply_to",
    ["noreply@site.example", "leads@example.com", "list-request@lists.example", "wordpress@site.example"],
)
def test_a_reply_to_that_is_no_person_never_makes_the_lead(reply_to: str) -> None:
    body = "Nombre: Eva Luna\nCorreo: eva@luna.example\nMensaje: Hola.\n"
    p = parse_email(_notification(frm="wordpress@site.example", reply_to=reply_to, body=body), own_addresses=OWN)
    assert (p.email, p.skip_reason) == ("eva@luna.example", None)
    no_visitor = parse_email(_notification(frm="wordpress@site.example", reply_to=reply_to,
                                           body="Nombre: Eva\nMensaje: Hola.\n"), own_addresses=OWN)
    assert no_visitor.email != reply_to
    assert (no_visitor.skip_reason, no_visitor.quarantine) == ("form-without-contact", True)


def test_label_on_its_own_line_and_first_plus_last_name() -> None:
    body = ("Primeiro nome\nMaria\n\nSobrenome\nCosta\n\nE-mail\nmaria@costa.example\n\n"
            "Telefone\n+55 11 91234 5678\n\nMensagem\nQuero um orçamento.\n\nSegunda linha.\n")
    p = parse_email(_notification(frm="no-reply@loja.example", body=body))
    assert (p.name, p.email, p.phone) == ("Maria Costa", "maria@costa.example", "+55 11 91234 5678")
    assert p.message == "Quero um orçamento.\n\nSegunda linha."


def test_reply_to_lead_from_a_form_is_a_new_message_with_the_template_subject(tmp_path: Path) -> None:
    item = to_lead_in(parse("cf7_es.eml"))
    now = datetime.now(UTC)
    lead = Lead(id="L1", name=item.name, email=item.email, email_norm=item.email_norm, message=item.message,
                intake=item.intake, state=State.SAVED, created_at=now, updated_at=now, metadata=item.metadata,
                subject=item.subject, message_id=item.message_id, category=Category.SALES, language="es")
    templates = Templates(ROOT / "config" / "templates", "es")
    out = compose_reply(lead, templates, from_address="leads@example.com", from_name="Ventas",
                        domain="example.com", category_label="ventas", include_summary=False)
    reply = message_from_bytes(out.data, policy=policy.default)
    assert out.to_addr == "laura.gomez@cliente.example"
    assert reply["Subject"] == templates.get(Category.SALES, "es").subject
    assert reply["In-Reply-To"] is None and reply["References"] is None
    # The same lead without the form mark is threaded as before.
    lead.metadata = {}
    threaded = message_from_bytes(compose_reply(
        lead, templates, from_address="leads@example.com", from_name="Ventas", domain="example.com",
        category_label="ventas", include_summary=False).data, policy=policy.default)
    assert threaded["In-Reply-To"] == item.message_id and threaded["Subject"].startswith("Re: ")


def test_config_form_senders_are_checked(tmp_path: Path) -> None:
    cfg = load_config(str(ROOT / "config" / "agent.toml"),
                      env={"LEADBOX_INBOX__FORM_SENDERS": '["WordPress@MySite.com", "shopify.com", "@wix.com"]'})
    assert cfg.settings.inbox.form_senders == ["wordpress@mysite.com", "@shopify.com", "@wix.com"]
    for bad in ('["not an address"]', '["@"]', '["a@b@c.com"]', '[""]'):
        with pytest.raises(ConfigError, match="form_senders"):
            load_config(str(ROOT / "config" / "agent.toml"), env={"LEADBOX_INBOX__FORM_SENDERS": bad})


@pytest.mark.slow
def test_cli_parse_email_reads_every_notification(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`leadbox parse-email` (argparse, config, inbox.form_senders) on every mail; one run as a process."""
    toml = (ROOT / "config" / "agent.toml").read_text(encoding="utf-8")
    conf = tmp_path / "agent.toml"
    conf.write_text(toml.replace("form_senders = []", 'form_senders = ["@hotelmar.example"]'), encoding="utf-8")
    for path in sorted(FORMS.glob("*.eml")):
        args = build_parser().parse_args(["parse-email", "--config", str(conf), str(path)])
        assert args.fn(args) == 0  # the command itself; main() would also reconfigure logging
        out = json.loads(capsys.readouterr().out)
        if path.name in TOOLS:
            assert (out["email"], out["skip_reason"]) == (TOOLS[path.name][0], None), path.name
            assert out["form"]["sender"] and out["phone"] == TOOLS[path.name][4]
        elif path.name == "custom_sender.eml":
            assert out["email"] == "irene@campos.example", out
        elif path.name == "form_without_contact.eml":
            assert (out["skip_reason"], out["quarantine"]) == ("form-without-contact", True)
        else:
            assert path.name.startswith("control_"), path.name
            assert out["form"] is None or out["skip_reason"] is not None, out
    run = subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(conf), "parse-email",
                          str(FORMS / "custom_sender.eml")], cwd=ROOT, capture_output=True, timeout=60)
    assert run.returncode == 0 and json.loads(run.stdout)["email"] == "irene@campos.example"


# -------------------------------------------------------------- property

_label = st.sampled_from
_local = st.from_regex(r"[a-z][a-z0-9]{0,10}(?:\.[a-z0-9]{1,8})?", fullmatch=True)
_domain = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]\.(?:com|example|es|com\.br|io)", fullmatch=True)
_form_sender = st.one_of(
    st.builds(lambda d: f"wordpress@{d}", _domain), st.builds(lambda d: f"noreply@{d}", _domain),
    st.builds(lambda d: f"www-data@{d}", _domain), st.just("mailer@shopify.com"),
    st.just("no-reply@crm.wix.com"), st.just("leads@example.com"), st.just("form-submission@squarespace.info"),
)
_words = st.lists(st.sampled_from(["hola", "quiero", "precio", "please", "quote", "orçamento", "para", "10",
                                   "units", "¿hay", "stock?", "gracias", "Name:", "email", "mensaje"]),
                  min_size=1, max_size=12).map(" ".join)


@st.composite
def notifications(draw: st.DrawFn) -> tuple[bytes, str, str]:
    sender = draw(_form_sender)
    visitor = f"{draw(_local)}@{draw(_domain)}"
    name = draw(st.sampled_from(["Eva Luna", "José Pérez", "Ana", "Zoë O'Brien", "李 小龙"]))
    message = draw(_words)
    name_label = draw(_label(["Name", "Nombre", "Nome", "Your Name", "Full name"]))
    email_label = draw(_label(["Email", "E-mail", "Correo electrónico", "Email Address", "Your Email"]))
    msg_label = draw(_label(["Message", "Mensaje", "Mensagem", "Comment", "Comentarios", "Your Message"]))
    layout = draw(st.sampled_from(["colon", "lines", "table", "reply_to"]))
    rows = [(name_label, name), (email_label, visitor), (msg_label, message)]
    if draw(st.booleans()):
        rows.insert(draw(st.integers(0, 3)), (draw(_label(["Page URL", "IP", "User Agent", "Budget"])), "x 1"))
    html = layout == "table"
    if layout == "lines":
        body = "\n\n".join(f"{k}\n{v}" for k, v in rows)
    elif html:
        body = "<table>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"
    else:
        body = "\n".join(f"{k}: {v}" for k, v in rows)
    reply_to = f"{name} <{visitor}>" if layout == "reply_to" or draw(st.booleans()) else None
    if draw(st.booleans()):
        body += "\n\n-- \nThis e-mail was sent from a contact form on Site (https://site.example)" if not html else ""
    raw = _notification(frm=f"Site <{sender}>", reply_to=reply_to, body=body, html=html,
                        subject=draw(st.sampled_from(["New form entry", "Contact", "[Site] \"quote\"", "Hola"])))
    return raw, sender, visitor


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notifications())
def test_property_the_form_sender_is_never_the_lead_when_a_visitor_address_is_there(
        case: tuple[bytes, str, str]) -> None:
    raw, sender, visitor = case
    p = parse_email(raw, own_addresses=OWN, own_domains=OWN_DOMAINS)
    assert p.email.lower() != sender.lower()
    assert (p.email, p.skip_reason) == (visitor, None), p
    assert is_valid_email(p.email) and p.form is not None


# -------------------------------------------------------------- hostile input


def test_hostile_notifications_parse_in_linear_time_and_stay_sane() -> None:
    """Each of these took minutes or more with a backtracking address search; now each is a parse."""
    long_token = "a" * 200_000  # no space, no address: the worst case for an address regex
    cases = {
        "long value": f"Name: Eva\nEmail: eva@luna.example\nMessage: {long_token}\n",
        "long email value": f"Name: Eva\nEmail: {long_token}\nMessage: hola\n",
        "long free line": f"Nombre: Eva\nCorreo: eva@luna.example\n\n{long_token}: x\n",
        "many fields": "".join(f"Field {i}: value {i}\n" for i in range(5_000)) + "Email: eva@luna.example\n",
        "many labels alone": "Name\nEva\n\n" * 3_000 + "Email\neva@luna.example\n",
    }
    for what, body in cases.items():
        p = parse_email(_notification(frm="wordpress@site.example", body=body))
        assert p.skip_reason is None or p.skip_reason == "form-without-contact", (what, p.skip_reason)
        assert len(p.message) <= 20_000 and len(p.form_fields) <= 100, what
        if p.skip_reason is None:
            assert p.email == "eva@luna.example", what
    nested = "<table><tr><td>" * 2_000 + "Email</td><td>eva@luna.example" + "</td></tr></table>" * 2_000
    p = parse_email(_notification(frm="noreply@site.example", body=nested, html=True))
    assert p.email in ("eva@luna.example", "") and p.skip_reason in (None, "form-without-contact")


def test_a_bounce_that_quotes_a_notification_stays_a_bounce() -> None:
    quoted = (FORMS / "cf7_en.eml").read_bytes().decode()
    raw = _notification(frm="MAILER-DAEMON@mx.example", subject="Undelivered Mail Returned to Sender",
                        body=f"This is the mail system at host mx.example.\n\n{quoted}")
    assert parse_email(raw).skip_reason == "delivery-report"


def test_a_listed_form_sender_may_mark_its_notifications_auto_generated() -> None:
    body = "Name: Eva Luna\nEmail: eva@luna.example\nMessage: Hola.\n"
    listed = frozenset({"@forms.example"})

    def parsed(extra: dict[str, str], senders: frozenset[str] = listed) -> ParsedEmail:
        raw = _notification(frm="notify@forms.example", body=body, extra=extra)
        return parse_email(raw, form_senders=senders)

    p = parsed({"Auto-Submitted": "auto-generated"})
    assert (p.email, p.skip_reason) == ("eva@luna.example", None)
    assert "auto-submitted" not in p.auto_headers  # so the reply to the visitor is not blocked by it
    assert reply_block_reason(p.email, to_lead_in(p).auto_headers) is None
    # Not listed, a reply to something, or also a list: still skipped.
    assert parsed({"Auto-Submitted": "auto-generated"}, frozenset()).skip_reason == "auto-submitted"
    assert parsed({"Auto-Submitted": "auto-replied"}).skip_reason == "auto-submitted"
    assert parsed({"Auto-Submitted": "auto-generated", "List-Id": "<l.example>"}).skip_reason == "mailing-list"


def test_a_services_own_desk_in_reply_to_is_no_visitor() -> None:
    """noreply@ with Reply-To support@ of the same organisation and plain text: a service's mail."""
    raw = _notification(frm="noreply@saas.example", reply_to="support+4411@help.saas.example",
                        subject="Your ticket was updated", body="We replied to your ticket. See the portal.")
    p = parse_email(raw)
    assert p.form is None and p.skip_reason == "no-reply-sender"
    # From the same kind of sender, a visitor of another organisation is a form's visitor.
    raw = _notification(frm="noreply@site.example", reply_to="Eva Luna <eva@luna.example>",
                        subject="Website enquiry", body="Hola, ¿tienen stock del modelo X?")
    p = parse_email(raw)
    assert (p.email, p.name, p.skip_reason) == ("eva@luna.example", "Eva Luna", None)
    assert p.message == "Hola, ¿tienen stock del modelo X?"
