"""Several mailboxes (inbox.mailboxes) against a real Dovecot over IMAPS and aiosmtpd.

Two working accounts and one with a wrong password: both working ones are polled, each reply
goes out From its mailbox over that mailbox's SMTP login, mail between our own mailboxes is no
lead, and a customer who writes to both is one lead.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from agent.app.metrics import Metrics
from agent.config import load_config
from agent.config_mailboxes import resolve_mailboxes
from agent.errors import ConfigError
from agent.intake.inbox import InboxPoller
from agent.stores.sqlite import SqliteStore
from tests.fixtures.daemon import ROOT, base_env, free_port, wait_for
from tests.fixtures.mailservers import DovecotServer
from tests.test_inbox import inbox_env, mail


def boxes_env(dovecot: DovecotServer, smtp: Any, boxes: list[dict[str, Any]], tmp: Path,
              **secrets: str) -> dict[str, str]:
    env = base_env(tmp)
    env.update({
        "LEADBOX_INBOX__ENABLED": "true", "LEADBOX_INBOX__START": "all",
        "LEADBOX_INBOX__HOST": "127.0.0.1", "LEADBOX_INBOX__PORT": str(dovecot.port_tls),
        "LEADBOX_INBOX__CA_FILE": dovecot.ca_file, "LEADBOX_INBOX__TIMEOUT": "5",
        "LEADBOX_INBOX__POLL_INTERVAL": "3600",
        "LEADBOX_INBOX__MAILBOXES": json.dumps(boxes),
        "LEADBOX_REPLY__TRANSPORT": "smtp", "LEADBOX_REPLY__SMTP_HOST": smtp.host,
        "LEADBOX_REPLY__SMTP_PORT": str(smtp.port_tls), "LEADBOX_REPLY__SMTP_SECURITY": "tls",
        "LEADBOX_REPLY__CA_FILE": smtp.ca_file, "LEADBOX_REPLY__SMTP_TIMEOUT": "3",
        "EMAIL_USER": smtp.username, "EMAIL_PASS": smtp.password,
        "LEADBOX_REPLY__FROM_ADDRESS": "leads@ourco.example", "LEADBOX_ADMIN_TOKEN": "tok",
    })
    env.update(secrets)
    return env


async def test_two_mailboxes_polled_replies_from_each_one_bad_password_own_mail_ignored_one_lead(
        dovecot: DovecotServer, smtp_server: Any, tmp_path: Path, make_daemon: Any) -> None:
    ventas, soporte, broken = dovecot.add_user(), dovecot.add_user(), dovecot.add_user()
    for user in (ventas, soporte):  # each mailbox sends with its own SMTP login
        smtp_server.users[user] = dovecot.users[user]
    tpl = tmp_path / "soporte-templates"  # soporte's own reply templates
    shutil.copytree(ROOT / "config" / "templates", tpl)
    for f in tpl.glob("*.txt"):
        f.write_text(f.read_text(encoding="utf-8") + "\nSOPORTE-TEMPLATE\n", encoding="utf-8")
    boxes = [
        {"name": "ventas", "username": ventas, "from_address": "ventas@ourco.example", "password_env": "PW_V"},
        {"name": "soporte", "username": soporte, "from_address": "soporte@ourco.example", "password_env": "PW_S",
         "templates_dir": str(tpl)},
        {"name": "info", "username": broken, "from_address": "info@ourco.example", "password_env": "PW_I"},
        # A server that is not there: down with backoff, and the others go on.
        {"name": "gone", "username": ventas, "from_address": "gone@ourco.example", "password_env": "PW_V",
         "port": free_port()},
    ]
    boxes[1]["idle"] = True  # soporte also holds IDLE: new mail comes in with no poll due (interval 1 h)
    dovecot.append(ventas, "INBOX", mail(1))
    dovecot.append(soporte, "INBOX", mail(2))
    # From one of our mailboxes to another: never a lead, never answered.
    dovecot.append(ventas, "INBOX", mail(4, sender="Soporte <soporte@ourco.example>"))
    # One customer writing to both mailboxes: one lead, one interaction, one reply.
    dovecot.append(ventas, "INBOX", mail(3, message_id="<a@empresa3.example>"))
    dovecot.append(soporte, "INBOX", mail(3, message_id="<b@empresa3.example>", subject="Otra vez"))
    env = boxes_env(dovecot, smtp_server, boxes, tmp_path, PW_V=dovecot.users[ventas],
                    PW_S=dovecot.users[soporte], PW_I="wrong-password")
    try:
        d, client = await make_daemon(env)

        async def recorded() -> bool:
            return sum((await d.store.inbox_outcomes()).values()) >= 5
        await wait_for(recorded, what="5 inbox records")
        sent = await asyncio.to_thread(smtp_server.wait_for, 3)  # the daemon runs on this loop
        by_to = {m["rcpt_tos"][0]: m for m in sent}
        assert set(by_to) == {"cliente1@empresa1.example", "cliente2@empresa2.example",
                              "cliente3@empresa3.example"}
        for to, box, login in (("cliente1@empresa1.example", "ventas", ventas),
                               ("cliente2@empresa2.example", "soporte", soporte)):
            m = by_to[to]
            head = message_from_bytes(m["data"], policy=policy.default)
            assert head["From"].addresses[0].addr_spec == f"{box}@ourco.example"
            assert m["mail_from"] == f"{box}@ourco.example" and m["login"] == login
            assert (b"SOPORTE-TEMPLATE" in m["data"]) == (box == "soporte")
        outcomes = await d.store.inbox_outcomes()
        assert outcomes.get("lead") == 3 and outcomes.get("interaction") == 1, outcomes
        assert await d.store.get_by_email("soporte@ourco.example") is None
        lead3 = await d.store.get_by_email("cliente3@empresa3.example")
        assert lead3 is not None and lead3.mailbox in ("ventas", "soporte")
        full = await d.store.get(lead3.id)
        assert full is not None and len(full.interactions) == 1
        # The API shows and filters by mailbox.
        r = await client.get("/leads?mailbox=soporte", headers={"Authorization": "Bearer tok"})
        assert r.status == 200
        listed = (await r.json())["leads"]
        assert "cliente2@empresa2.example" in {x["email"] for x in listed}
        assert {x["mailbox"] for x in listed} == {"soporte"}
        # The console's list filters by mailbox too.
        r = await client.post("/console/login", data={"user": "", "password": "tok"}, allow_redirects=False)
        assert r.status in (302, 303)
        page = await (await client.get("/console/leads?mailbox=soporte")).text()
        assert "cliente2@empresa2.example" in page and "cliente1@empresa1.example" not in page
        lead1 = await d.store.get_by_email("cliente1@empresa1.example")
        assert lead1 is not None and lead1.mailbox == "ventas"
        # /readyz: the broken mailbox shows by name but does not make the replica unready.
        async def refused() -> bool:  # Dovecot answers a wrong password after its auth delay
            inbox = (await (await client.get("/readyz")).json())["checks"]["inbox"]["mailboxes"]
            return bool(inbox["info"]["state"] == "needs_credentials" and inbox["gone"]["state"] == "down"
                        and inbox["soporte"]["idle"] == "ok")
        await wait_for(refused, what="the wrong password refused")
        rz = await client.get("/readyz")
        body = await rz.json()
        inbox = body["checks"]["inbox"]
        assert inbox["mailboxes"]["ventas"]["state"] == "ok"
        assert inbox["mailboxes"]["soporte"]["state"] == "ok"
        assert inbox["mailboxes"]["info"]["state"] == "needs_credentials"
        assert inbox["mailboxes"]["gone"]["state"] == "down" and inbox["mailboxes"]["soporte"]["idle"] == "ok"
        assert rz.status == 200 and inbox["state"] == "degraded"
        metrics = await (await client.get("/metrics")).text()
        assert 'leadbox_inbox_last_success_timestamp_seconds{mailbox="ventas"}' in metrics
        assert 'leadbox_inbox_last_success_timestamp_seconds{mailbox="info"}' not in metrics
        assert 'leadbox_adapter_up{adapter="inbox:soporte"} 1.0' in metrics
        assert 'leadbox_adapter_up{adapter="inbox:info"} 0.0' in metrics
        assert "wrong-password" not in json.dumps(body)
        # Only three replies: none to our own mailbox, one for the customer of both.
        assert len(smtp_server.messages) == 3
        # IDLE on soporte: a new mail becomes a lead and is answered without any poll being asked for.
        dovecot.append(soporte, "INBOX", mail(5))
        sent = await asyncio.to_thread(smtp_server.wait_for, 4)
        assert {m["rcpt_tos"][0] for m in sent} >= {"cliente5@empresa5.example"}
        fifth = next(m for m in sent if m["rcpt_tos"] == ["cliente5@empresa5.example"])
        assert fifth["mail_from"] == "soporte@ourco.example"
    finally:
        for user in (ventas, soporte):
            smtp_server.users.pop(user, None)


async def test_single_mailbox_config_is_default_and_its_checkpoint_carries_over(
        dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.add_user()
    dovecot.append(user, "INBOX", mail(1))
    config = load_config(str(ROOT / "config" / "agent.toml"), env=inbox_env(dovecot, user, tmp_path))
    [box] = resolve_mailboxes(config)
    assert box.name == "default" and box.username == user
    store = SqliteStore(config.store_url)
    await store.open()
    uid = dovecot.append(user, "INBOX", mail(2))
    c = dovecot.client(user)
    uidvalidity = int(c.select_folder("INBOX")[b"UIDVALIDITY"])
    c.logout()
    # An install from before mailboxes had names: its checkpoint is under user@host/folder.
    assert uid is not None
    await store.set_checkpoint(f"{user}@127.0.0.1/INBOX", uidvalidity, uid - 1)
    poller = InboxPoller(config, store, Metrics())
    try:
        summary = await poller.poll()
        assert summary is not None and summary.fetched == 1 and summary.leads == 1  # only mail 2
        assert await store.get_checkpoint("default") == (uidvalidity, uid)
        lead = await store.get_by_email("cliente2@empresa2.example")
        assert lead is not None and lead.mailbox == "default"
        assert await store.get_by_email("cliente1@empresa1.example") is None
    finally:
        await poller.stop()
        await store.close()


def test_mailbox_config_errors_name_the_mailbox_and_never_the_secret(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    env.update({"LEADBOX_INBOX__ENABLED": "true", "EMAIL_USER": "x@ourco.example", "EMAIL_PASS": "p"})
    box = {"name": "ventas", "username": "v@ourco.example", "from_address": "ventas@ourco.example",
           "password_env": "PW_VENTAS"}
    path = str(ROOT / "config" / "agent.toml")
    with pytest.raises(ConfigError, match=r"ventas.*PW_VENTAS.*not set"):
        load_config(path, env={**env, "LEADBOX_INBOX__MAILBOXES": json.dumps([box])})
    with pytest.raises(ConfigError, match="unique"):
        load_config(path, env={**env, "PW_VENTAS": "s3cret", "LEADBOX_INBOX__MAILBOXES": json.dumps([box, box])})
    with pytest.raises(ConfigError, match="name"):
        load_config(path, env={**env, "LEADBOX_INBOX__MAILBOXES": json.dumps([{**box, "name": "Bad Name!"}])})
    config = load_config(path, env={**env, "PW_VENTAS": "s3cret", "LEADBOX_INBOX__MAILBOXES": json.dumps(
        [{**box, "folder": "Ventas", "idle": True}])})
    [m] = resolve_mailboxes(config)
    assert (m.name, m.password, m.inbox.folder, m.inbox.idle, m.inbox.host) == (
        "ventas", "s3cret", "Ventas", True, config.settings.inbox.host)
    assert "s3cret" not in repr(m) and "s3cret" not in repr(config)
    assert {"ventas@ourco.example", "v@ourco.example"} <= config.own_addresses
    oauth = {**box, "auth": "xoauth2", "password_env": "", "refresh_token_env": "RT_VENTAS"}
    with pytest.raises(ConfigError, match=r"ventas.*RT_VENTAS.*not set"):
        load_config(path, env={**env, "LEADBOX_INBOX__MAILBOXES": json.dumps([oauth])})
    config = load_config(path, env={**env, "RT_VENTAS": "1//refresh", "LEADBOX_INBOX__MAILBOXES": json.dumps([oauth])})
    [m] = resolve_mailboxes(config)
    assert (m.inbox.auth, m.refresh_token, m.password) == ("xoauth2", "1//refresh", None)


def test_mailbox_passwords_are_redacted_from_logs(tmp_path: Path) -> None:
    import io
    import logging

    from agent.cli import _setup_logging

    env = base_env(tmp_path)
    env.update({"LEADBOX_INBOX__ENABLED": "true", "EMAIL_USER": "x@ourco.example", "EMAIL_PASS": "p",
                "PW_VENTAS": "ventas-pass-1234", "LEADBOX_INBOX__MAILBOXES": json.dumps([
                    {"name": "ventas", "username": "v@ourco.example", "from_address": "ventas@ourco.example",
                     "password_env": "PW_VENTAS"}])})
    config = load_config(str(ROOT / "config" / "agent.toml"), env=env)
    out = io.StringIO()
    try:
        _setup_logging(config, stream=out)
        logging.getLogger("leadbox.test").warning("login failed for ventas-pass-1234")
    finally:
        _setup_logging(None)
    assert "ventas-pass-1234" not in out.getvalue() and "***" in out.getvalue()
