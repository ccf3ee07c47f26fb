"""Who a reply comes from and who signs it: ``reply.from_address`` and ``reply.company_name``.

Replies are read back from the real daemon's outbox (.eml files) and parsed as mail.
"""

from __future__ import annotations

import logging
import shutil
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from tests.fixtures.daemon import ROOT, settle

ACME = {"LEADBOX_REPLY__FROM_ADDRESS": "hola@acme.example", "LEADBOX_REPLY__COMPANY_NAME": "Acme Ibérica"}
LEADS = [  # (email, message, company) in the three languages of the templates
    ("ana@example.com", "Hola, ¿me enviáis un presupuesto para una tienda online?", "Tiendas Ana"),
    ("john@example.com", "Hello, my account is broken and I cannot log in since yesterday. Please help.", None),
    ("joao@example.com", "Olá, qual é o horário de atendimento e onde vocês ficam? Obrigado.", None),
]


def replies(tmp: Path) -> dict[str, EmailMessage]:
    out = {}
    for p in sorted((tmp / "outbox").glob("*.eml")):
        msg = BytesParser(policy=policy.default).parsebytes(p.read_bytes())
        out[msg["To"].addresses[0].addr_spec] = msg  # type: ignore[union-attr]
    return out  # type: ignore[return-value]


async def post_all(d: Any, c: Any) -> None:
    for addr, text, company in LEADS:
        body = {"name": "Cliente Prueba", "email": addr, "message": text, **({"company": company} if company else {})}
        r = await c.post("/leads", json=body)
        assert r.status == 202, await r.text()
    await settle(d, len(LEADS))


async def test_company_name_signs_every_reply_and_names_the_sender(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon(ACME)
    await post_all(d, c)
    got = replies(tmp_path)
    assert set(got) == {addr for addr, _, _ in LEADS}
    for addr, msg in got.items():
        sender = msg["From"].addresses[0]  # type: ignore[union-attr]
        assert (sender.display_name, sender.addr_spec) == ("Acme Ibérica", "hola@acme.example"), addr
        body = msg.get_content()
        assert "$company" not in body and "Acme Ibérica" in body.strip().splitlines()[-1], body
    assert got["ana@example.com"].get_content().strip().endswith("El equipo de Acme Ibérica")
    assert got["john@example.com"].get_content().strip().endswith("The Acme Ibérica support team")
    assert got["joao@example.com"].get_content().strip().endswith("Equipe Acme Ibérica")


async def test_company_is_the_leads_and_company_name_ours(make_daemon: Any, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "config" / "templates", templates)
    (templates / "sales.es.txt").write_text(
        "# a comment line\nSubject: $company_name: gracias\n\nHola $first_name.\n"
        "Vuestra empresa: [$company]. La nuestra: [$company_name].\n", encoding="utf-8")
    d, c = await make_daemon({**ACME, "LEADBOX_REPLY__TEMPLATES_DIR": str(templates),
                              "LEADBOX_REPLY__FROM_NAME": "Ana de Acme"})
    await post_all(d, c)
    msg = replies(tmp_path)["ana@example.com"]
    assert "Vuestra empresa: [Tiendas Ana]. La nuestra: [Acme Ibérica]." in msg.get_content()
    assert str(msg["Subject"]) == "Acme Ibérica: gracias"
    assert msg["From"].addresses[0].display_name == "Ana de Acme"  # type: ignore[union-attr]


async def test_default_sender_is_a_warning_at_start(make_daemon: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="leadbox.daemon"):
        await make_daemon({"LEADBOX_REPLY__FROM_ADDRESS": "leads@localhost"})
    warned = [r.getMessage() for r in caplog.records if "default sender" in r.getMessage()]
    assert warned and "reply.from_address" in warned[0] and "reply.company_name" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="leadbox.daemon"):
        await make_daemon(ACME)
    assert not [r for r in caplog.records if "default sender" in r.getMessage()]


def test_an_empty_company_name_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[reply]\ncompany_name = ""\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"reply\.company_name: String should have at least 1 character"):
        load_config(str(cfg), env={})


def test_portuguese_templates_say_they_are_brazilian() -> None:
    for path in sorted((ROOT / "config" / "templates").glob("*.pt.txt")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("#") and "pt-BR" in first, path
