"""``leadbox forget EMAIL --mailbox`` and ``DELETE /leads/{id}?mailbox=1`` against the real Dovecot.

The fixture's namespace flags a folder ``Papelera`` as ``\\Trash`` and ``Archivo`` as ``\\All``
(RFC 6154); a user who never created Papelera has no Trash folder at all (the expunge path).
"""

from __future__ import annotations

import json
from typing import Any

from tests.fixtures.daemon import settle, wait_for
from tests.fixtures.mailservers import DovecotServer, free_port
from tests.test_inbox import inbox_env, mail
from tests.test_privacy import API, TOKEN, cli

PERSON = "rosa.marin@cliente.example"


def folder_senders(dovecot: DovecotServer, user: str, folder: str) -> list[str]:
    """The From and Reply-To lines of every mail in ``folder`` (empty when the folder is missing)."""
    return sorted(dovecot.header_lines(user, folder, "FROM REPLY-TO"))


def seed(dovecot: DovecotServer, user: str) -> None:
    """Her mails in INBOX (one a form notification with her in Reply-To), the processed folder, the
    quarantine and the archive; others' mails, one of them a look-alike address, around them."""
    dovecot.append(user, "INBOX", mail(1, sender=f"Rosa Marín <{PERSON}>"))
    dovecot.append(user, "INBOX", mail(2, sender="WordPress <wordpress@misitio.example>",
                                       extra={"Reply-To": f"Rosa <{PERSON}>"}))
    dovecot.append(user, "INBOX", mail(3, sender="Larosa <larosa.marin@cliente.example>"))  # look-alike
    dovecot.append(user, "INBOX", mail(4, sender="Otro <otro@empresa.example>"))
    dovecot.append(user, "Leads/Processed", mail(5, sender=f"<{PERSON.upper()}>"))
    dovecot.append(user, "Leads/Processed", mail(6, sender="Otro <otro@empresa.example>"))
    dovecot.append(user, "Leads/Quarantine", mail(7, sender=PERSON))
    dovecot.append(user, "Archivo", mail(8, sender=f"Rosa <{PERSON}>"))


async def test_forget_mailbox_moves_her_mails_to_trash_and_is_idempotent(
        dovecot: DovecotServer, tmp_path: Any) -> None:
    user = dovecot.add_user()
    c = dovecot.client(user, tls=False)
    c.create_folder("Papelera")
    c.logout()
    seed(dovecot, user)
    env = inbox_env(dovecot, user, tmp_path)
    out = cli(tmp_path, "forget", PERSON, "--mailbox", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    box = f"mailbox {user}@127.0.0.1"
    for line in (f"{box} INBOX: 2 moved to Papelera", f"{box} Leads/Processed: 1 moved to Papelera",
                 f"{box} Leads/Quarantine: 1 moved to Papelera", f"{box} Archivo: 1 moved to Papelera"):
        assert line in out.stdout.splitlines(), out.stdout
    assert folder_senders(dovecot, user, "INBOX") == [
        "From: Larosa <larosa.marin@cliente.example>", "From: Otro <otro@empresa.example>"]
    assert folder_senders(dovecot, user, "Leads/Processed") == ["From: Otro <otro@empresa.example>"]
    assert folder_senders(dovecot, user, "Leads/Quarantine") == []
    assert folder_senders(dovecot, user, "Archivo") == []
    assert len(folder_senders(dovecot, user, "Papelera")) == 5
    again = cli(tmp_path, "forget", PERSON, "--mailbox", env=env)
    assert again.returncode == 0, again.stderr
    assert f"{box} INBOX: 0 moved to Papelera" in again.stdout.splitlines()
    assert len(folder_senders(dovecot, user, "Papelera")) == 5  # Trash itself is never searched
    plain = cli(tmp_path, "forget", "otro@empresa.example", env=env)  # without --mailbox: the mailbox is untouched
    assert plain.returncode == 0 and "mailbox" not in plain.stdout
    assert "From: Otro <otro@empresa.example>" in folder_senders(dovecot, user, "INBOX")


async def test_without_a_trash_folder_her_mails_are_expunged_and_nothing_else(
        dovecot: DovecotServer, tmp_path: Any) -> None:
    user = dovecot.add_user()
    seed(dovecot, user)
    # A mail the user flagged \Deleted themselves stays: only her UIDs are expunged (UID EXPUNGE).
    dovecot.append(user, "INBOX", mail(9, sender="Suyo <suyo@empresa.example>"), flags=(b"\\Deleted",))
    # Over STARTTLS with an XOAUTH2 token (Dovecot checks the bearer token against the password).
    env = inbox_env(dovecot, user, tmp_path, LEADBOX_INBOX__PORT=str(dovecot.port), LEADBOX_INBOX__SECURITY="starttls",
                    LEADBOX_INBOX__AUTH="xoauth2", INBOX_OAUTH_TOKEN=dovecot.users[user], EMAIL_PASS="")
    out = cli(tmp_path, "forget", PERSON, "--mailbox", "--yes", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"mailbox {user}@127.0.0.1 INBOX: 2 flagged \\Deleted and expunged" in out.stdout.splitlines()
    assert folder_senders(dovecot, user, "INBOX") == [
        "From: Larosa <larosa.marin@cliente.example>", "From: Otro <otro@empresa.example>",
        "From: Suyo <suyo@empresa.example>"]
    assert folder_senders(dovecot, user, "Leads/Processed") == ["From: Otro <otro@empresa.example>"]
    assert folder_senders(dovecot, user, "Leads/Quarantine") == []
    c = dovecot.client(user, tls=False)
    assert not c.folder_exists("Papelera")  # no Trash was made up
    c.logout()


async def test_delete_lead_with_mailbox_takes_the_mail_the_inbox_took_in(
        dovecot: DovecotServer, tmp_path: Any, make_daemon: Any) -> None:
    """The real flow: the poller takes her mail and moves it to Leads/Processed; the API erases both."""
    user = dovecot.add_user()
    c = dovecot.client(user, tls=False)
    c.create_folder("Papelera")
    c.logout()
    dovecot.append(user, "INBOX", mail(1, sender=f"Rosa Marín <{PERSON}>"))
    dovecot.append(user, "INBOX", mail(4, sender="Otro <otro@empresa.example>"))
    env = inbox_env(dovecot, user, tmp_path, LEADBOX_INBOX__POLL_INTERVAL="3600", LEADBOX_INBOX__AFTER="move",
                    LEADBOX_ADMIN_TOKEN=TOKEN)
    d, client = await make_daemon(env)
    await settle(d, 2)

    async def moved() -> bool:
        return len(folder_senders(dovecot, user, "Leads/Processed")) == 2

    await wait_for(moved, 15, what="the inbox's after = move")
    lead = await d.store.get_by_email(PERSON)
    r = await client.delete(f"/leads/{lead.id}?mailbox=1", headers=API)
    assert r.status == 200
    erased = (await r.json())["erased"]
    assert erased["leads"] == 1
    (account,) = erased["mailbox"]
    assert account["folders"]["Leads/Processed"] == 1 and account["errors"] == {}
    assert folder_senders(dovecot, user, "Leads/Processed") == ["From: Otro <otro@empresa.example>"]
    (trashed,) = folder_senders(dovecot, user, "Papelera")
    assert trashed.endswith(f"<{PERSON}>")


async def test_mailbox_down_is_one_line_and_the_store_is_still_erased(
        dovecot: DovecotServer, tmp_path: Any, make_daemon: Any) -> None:
    d, c = await make_daemon({"LEADBOX_ADMIN_TOKEN": TOKEN})
    await c.post("/leads", json={"name": "Rosa", "email": PERSON, "message": "hola"})
    await settle(d, 1)
    await d.stop()
    user = dovecot.add_user()
    env = inbox_env(dovecot, user, tmp_path, LEADBOX_INBOX__PORT=str(free_port()))  # nothing listens there
    out = cli(tmp_path, "forget", PERSON, "--mailbox", env=env)
    assert out.returncode == 1
    assert "leads: 1" in out.stdout.splitlines(), out.stdout
    (line,) = [x for x in out.stderr.splitlines() if not x.startswith("{")]  # JSON lines are the log
    assert line.startswith(f"forget: mailbox {user}@127.0.0.1 connect: not reached (imap 127.0.0.1:"), line
    assert line.endswith("Connection refused)); everything else was erased") and dovecot.users[user] not in line
    assert cli(tmp_path, "export", PERSON, env=env).returncode == 1  # nothing held any more
    off = cli(tmp_path, "forget", PERSON, "--mailbox")  # no inbox configured: said, non-zero, store done
    assert off.returncode == 1 and "leads: 0" in off.stdout
    said = [x for x in off.stderr.splitlines() if not x.startswith("{")]
    assert said == ["forget: --mailbox: not configured: inbox.enabled = false, no mailbox to search; "
                    "everything else was erased"]


async def test_every_configured_mailbox_is_searched_and_a_refused_one_is_named(
        dovecot: DovecotServer, tmp_path: Any) -> None:
    ventas, soporte, broken = dovecot.add_user(), dovecot.add_user(), dovecot.add_user()
    c = dovecot.client(ventas, tls=False)
    c.create_folder("Papelera")  # soporte has no Trash: its mail is expunged
    c.logout()
    for user in (ventas, soporte):
        dovecot.append(user, "INBOX", mail(1, sender=f"Rosa <{PERSON}>"))
        dovecot.append(user, "INBOX", mail(4, sender="Otro <otro@empresa.example>"))
    boxes = [
        {"name": "ventas", "username": ventas, "from_address": "ventas@ourco.example", "password_env": "PW_V"},
        {"name": "soporte", "username": soporte, "from_address": "soporte@ourco.example", "password_env": "PW_S"},
        {"name": "info", "username": broken, "from_address": "info@ourco.example", "password_env": "PW_I"},
    ]
    env = inbox_env(dovecot, ventas, tmp_path, LEADBOX_INBOX__MAILBOXES=json.dumps(boxes),
                    PW_V=dovecot.users[ventas], PW_S=dovecot.users[soporte], PW_I="wrong-password")
    out = cli(tmp_path, "forget", PERSON, "--mailbox", env=env)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert f"mailbox {ventas}@127.0.0.1 INBOX: 1 moved to Papelera" in lines, out.stdout
    assert f"mailbox {soporte}@127.0.0.1 INBOX: 1 flagged \\Deleted and expunged" in lines, out.stdout
    for user in (ventas, soporte):
        assert folder_senders(dovecot, user, "INBOX") == ["From: Otro <otro@empresa.example>"]
    (line,) = [x for x in out.stderr.splitlines() if not x.startswith("{")]
    assert line.startswith(f"forget: mailbox {broken}@127.0.0.1 connect: not reached (imap 127.0.0.1: login "
                           f"refused for {broken}"), line
    assert "wrong-password" not in out.stdout + out.stderr
