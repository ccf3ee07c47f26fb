"""Website form notifications through the whole daemon, against the real Dovecot.

The lead is the visitor (dedupe by the visitor's address), the reply goes to the
visitor as a new message (template subject, no In-Reply-To), the lead records the
form, a notification without a visitor is quarantined, loop protection applies to
the visitor's address.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import pytest

from agent.core.replies import Templates
from tests.fixtures.daemon import ROOT, DaemonFactory
from tests.fixtures.mailservers import DovecotServer
from tests.test_inbox_daemon import env, outbox, replies_for, stored

FORMS = ROOT / "tests" / "data" / "emails" / "forms"
SITE = "ourco.example"  # the daemon's own domain (reply.from_address in base_env)


def notification(n: int, visitor: str, text: str, *, sender: str = f"wordpress@{SITE}") -> bytes:
    """A Contact Form 7 notification from a website on our own domain (own Message-ID domain too)."""
    m = EmailMessage()
    m["From"] = f"Our Co <{sender}>"
    m["To"] = f"leads@{SITE}"
    m["Reply-To"] = visitor
    m["Subject"] = f'Our Co "Consulta {n}"'
    m["Message-ID"] = f"<cf7-{n}@{SITE}>"
    m.set_content(f"De: Visitante <{visitor}>\nAsunto: Consulta {n}\n\nCuerpo del mensaje:\n{text}\n\n-- \n"
                  f"Este mensaje se ha enviado desde un formulario de contacto en Our Co (https://{SITE})\n")
    return m.as_bytes()


@pytest.mark.slow
async def test_form_notifications_become_leads_of_the_visitors_and_get_new_replies(
        dovecot: DovecotServer, tmp_path: Path, make_daemon: DaemonFactory, store_url: str) -> None:
    """Once on SQLite, once on PostgreSQL (the form metadata is JSON in both)."""
    user = dovecot.add_user()
    for raw in (
        notification(1, "laura@cliente.example", "Necesito presupuesto para 30 taladros."),
        notification(2, "laura@cliente.example", "Otra pregunta: ¿hacen envíos?"),  # same visitor
        (FORMS / "shopify.eml").read_bytes(),
        (FORMS / "php_mail.eml").read_bytes(),
        (FORMS / "custom_sender.eml").read_bytes(),  # only a form through inbox.form_senders
        (FORMS / "form_without_contact.eml").read_bytes(),
        (FORMS / "control_newsletter.eml").read_bytes(),
        notification(3, f"leads@{SITE}", "Hola"),  # the "visitor" is us: a loop, never a lead
    ):
        dovecot.append(user, "INBOX", raw)
    d, _ = await make_daemon(env(dovecot, user, tmp_path, LEADBOX_STORE__URL=store_url,
                                 LEADBOX_INBOX__FORM_SENDERS='["@hotelmar.example"]'))
    await stored(d, 8)
    outcomes = await d.store.inbox_outcomes()
    assert outcomes == {"lead": 4, "interaction": 1, "quarantined": 1, "skipped": 2}, outcomes

    await replies_for(tmp_path, 4)
    await asyncio.sleep(0.5)  # a fifth reply would be a bug: give it the chance to show
    replies = outbox(tmp_path)
    tos = sorted(str(m["To"].addresses[0].addr_spec) for m in replies)
    assert tos == ["irene@campos.example", "laura@cliente.example", "marta@vidal.example",
                   "raul.ortega@correo.example"]
    templates = Templates(ROOT / "config" / "templates", "es")
    template_subjects = {t.subject for t in templates._cache.values()}  # noqa: SLF001
    for reply in replies:
        assert reply["In-Reply-To"] is None and reply["References"] is None
        assert str(reply["Subject"]) in template_subjects, reply["Subject"]

    lead = await d.store.get_by_email("laura@cliente.example")
    assert lead is not None and lead.intake == "email"
    full = await d.store.get(lead.id)
    assert full is not None and len(full.interactions) == 1
    assert full.metadata["form"]["sender"] == f"wordpress@{SITE}"
    assert full.metadata["form"]["tool"] == "contact-form-7"
    assert full.message == "Necesito presupuesto para 30 taladros." and full.subject == "Consulta 1"
    php = await d.store.get_by_email("raul.ortega@correo.example")
    assert php is not None and (php.phone, php.company) == ("611 222 333", "Ortega Reformas")
    for site in (f"wordpress@{SITE}", "mailer@shopify.com", "www-data@server", "avisos@hotelmar.example",
                 f"leads@{SITE}"):
        assert await d.store.get_by_email(site) is None
