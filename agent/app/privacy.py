"""Personal data: erase a person everywhere leadbox wrote, export what it holds, keep no longer than set.

Used by ``leadbox forget|export|retention``, by ``DELETE /leads/{id}`` and ``GET /leads/export``,
by the console's erase action and by the daily retention job. A person is found by the same
normalization as dedupe, so ``Ana.Lopez+x@Gmail.com`` is ``ana.lopez@gmail.com`` (with Gmail
folding on). What cannot be reached now (the sheet) is recorded and retried by a job; the report
says so.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

from agent.app.wiring import make_forget_mailboxes
from agent.config import Config
from agent.core.models import Lead
from agent.core.ports import Mirror, Store
from agent.core.validation import normalize_email
from agent.errors import LeadboxError, TransientError
from agent.intake.webhook import lead_json

log = logging.getLogger("leadbox.privacy")

MAILBOX_OFF = "not configured: inbox.enabled = false, no mailbox to search"
HEADER_BYTES = 8192  # the part of an .eml file read to find its recipient


class Privacy:
    """Erasure, export and retention over the store, the outbox folder and the sheet."""

    def __init__(self, config: Config, store: Store, mirror: Mirror | None) -> None:
        self.config, self.store, self.mirror = config, store, mirror

    def key(self, email: str) -> str:
        return normalize_email(email, fold_gmail=self.config.settings.dedupe.fold_gmail)

    async def _wait_idle(self, lead_ids: list[str], seconds: float) -> None:
        """A lead being processed is finished (or its lease runs out) before it is erased."""
        deadline = time.monotonic() + seconds
        while await self.store.leases_held(lead_ids):
            if time.monotonic() > deadline:
                raise TransientError("a lead of this person is being processed right now; try again in a minute")
            await asyncio.sleep(0.2)

    async def forget(self, email: str, *, wait_seconds: float = 30.0, mailbox: bool = False) -> dict[str, Any]:
        """Erase the person; returns what was removed, per place (idempotent: zeros the second time).

        With ``mailbox``, their original mails also leave the IMAP mailbox (``report["mailbox"]``),
        after everything else: a mailbox that cannot be reached never keeps the rest from going.
        """
        norm = self.key(email)
        leads = await self.store.person_leads(norm, email)
        ids = [x.id for x in leads]
        await self._wait_idle(ids, wait_seconds)
        if self.mirror is not None:
            self.mirror.forget(ids)  # rows queued in memory are never written
        report: dict[str, Any] = dict(await self.store.erase_person(norm, email))
        addresses = {email.strip().lower(), norm} | {x.email.strip().lower() for x in leads}
        report["outbox_files"] = self._erase_outbox(ids, addresses)
        report["sheet"] = await self._erase_sheet(norm, ids)
        if mailbox:
            report["mailbox"] = await self._erase_mailbox(norm, addresses)
        log.info("personal data erased", extra={"event": "forget", "reason": f"{len(ids)} lead(s)"})
        return report

    def _outbox(self) -> Path | None:
        r = self.config.settings.reply
        return Path(r.outbox_dir) if r.transport == "outbox" or Path(r.outbox_dir).is_dir() else None

    def _erase_outbox(self, lead_ids: list[str], addresses: set[str]) -> int:
        """Delete the .eml files of these leads' replies, and any other addressed to the person."""
        folder = self._outbox()
        if folder is None or not folder.is_dir():
            return 0
        prefixes = tuple(f"reply-{i}_" for i in lead_ids)
        removed = 0
        for path in folder.glob("*.eml"):
            if path.name.startswith(prefixes) or _addressed_to(path, addresses):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    async def _erase_sheet(self, norm: str, lead_ids: list[str]) -> int | str:
        if not self.config.settings.sheets.enabled:
            return "not configured"
        if self.mirror is None:
            await self.store.add_pending_erasure(norm, lead_ids)
            return "pending: the sheet is not reachable now; the daemon's job removes the row"
        try:
            return await self.mirror.erase_rows(lead_ids, norm)
        except LeadboxError as e:
            await self.store.add_pending_erasure(norm, lead_ids)
            return f"pending: {e}; a job retries until it is done"

    async def _erase_mailbox(self, norm: str, addresses: set[str]) -> list[dict[str, object]] | str:
        """The person's mails in each polled mailbox go to Trash (or are expunged), one session each."""
        from agent.intake.mailbox_erase import Person, erase_person_mail

        accounts = make_forget_mailboxes(self.config)
        if not accounts:
            return MAILBOX_OFF
        person = Person(norm, frozenset(a for a in addresses if a),
                        fold_gmail=self.config.settings.dedupe.fold_gmail)
        own_copy = self.config.settings.reply.self_copy_folder
        out = []
        for box, folders in accounts:
            done = await asyncio.to_thread(erase_person_mail, box, folders, person, own_copy_folder=own_copy)
            out.append(done.as_dict())
        return out

    async def retry_pending(self) -> int:
        """The job: erase sheet rows that could not be reached before; returns how many were done."""
        if self.mirror is None:
            return 0
        done = 0
        for erasure_id, norm, lead_ids, _ in await self.store.pending_erasures():
            try:
                await self.mirror.erase_rows(lead_ids, norm)
            except LeadboxError as e:
                log.info("personal data: sheet row still to erase", extra={"reason": str(e)[:200]})
                continue
            await self.store.done_erasure(erasure_id)
            done += 1
        return done

    async def export(self, email: str) -> dict[str, Any]:
        """One JSON document with everything held about the person."""
        norm = self.key(email)
        leads = await self.store.person_leads(norm, email)
        records = await self.store.person_records([x.id for x in leads])
        labels = self.config.settings.labels
        out = {"email": email.strip(), "normalized": norm, "exported_at": time.time(),
               "leads": [lead_json(x, labels) for x in leads], **records}
        texts = {x.id: self._reply_text(x) for x in leads}
        for lead in out["leads"]:
            lead["reply"]["text"] = texts.get(lead["id"])
        return out

    def _reply_text(self, lead: Lead) -> str | None:
        folder = self._outbox()
        if folder is None or not lead.reply_message_id:
            return None
        name = re.sub(r"[^A-Za-z0-9._-]", "_", lead.reply_message_id.strip("<>")) + ".eml"
        try:
            return (folder / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    async def retention(self, *, dry_run: bool) -> dict[str, Any]:
        """Apply ``store.retention_days`` with ``store.retention_action``; with dry_run, only count."""
        s = self.config.settings.store
        if s.retention_days <= 0:
            return {"retention_days": 0, "people": 0, "note": "store.retention_days = 0: leads are kept"}
        cutoff = time.time() - s.retention_days * 86400
        people = await self.store.people_before(cutoff, limit=100_000 if dry_run else 500)
        report: dict[str, Any] = {"retention_days": s.retention_days, "action": s.retention_action,
                                  "people": len(people), "dry_run": dry_run}
        if dry_run:
            return report
        leads = 0
        for norm, email in people:
            if s.retention_action == "delete":
                leads += int((await self.forget(email))["leads"])
            else:
                ids = await self.store.anonymize_person(norm, email)
                leads += len(ids)
                self._erase_outbox(ids, {email.lower(), norm})
                await self._erase_sheet(norm, ids)
        report["leads"] = leads
        return report


def _addressed_to(path: Path, addresses: set[str]) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES).decode("utf-8", "replace").lower()
    except OSError:
        return False
    to = next((line for line in head.splitlines() if line.startswith("to:")), "")
    return any(a and a in to for a in addresses)
