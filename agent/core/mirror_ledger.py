"""Record in the store what the mirror confirmed, without making anyone wait for it.

The pipeline's mirror step only queues a lead's row; the store's ``mirror_status`` is the
mirror's ledger: ``pending`` until the row is confirmed (``done``) or refused for good
(``error``). When a row's future settles, ``note`` sets the status on the lead the worker still
holds (so the worker's own write of the lead carries it) and writes it to the store, coalescing
the confirmations of one event-loop turn into one background task. A transient failure writes
nothing: the lead stays ``pending`` and the catch-up job sends it again later (the mirror's id
cache makes that safe), as it does after a crash between the append and this write.
"""

from __future__ import annotations

import asyncio
import logging

from agent.core.models import Lead
from agent.core.ports import Store
from agent.core.states import MirrorStatus
from agent.errors import PermanentError

log = logging.getLogger("leadbox.pipeline")


class MirrorLedger:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._todo: dict[str, MirrorStatus] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, lead: Lead, future: asyncio.Future[None]) -> None:
        """A done-callback for the future ``Mirror.submit`` returned for ``lead``."""
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            status = MirrorStatus.DONE
        elif isinstance(error, PermanentError):
            status = MirrorStatus.ERROR
            log.warning("mirror refused", extra={"lead_id": lead.id, "reason": str(error)})
        else:
            log.info("mirror deferred", extra={"lead_id": lead.id, "reason": str(error) or "unknown"})
            return
        lead.mirror_status = status
        self._todo[lead.id] = status
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self._todo:
            todo, self._todo = self._todo, {}
            for lead_id, status in todo.items():
                try:
                    await self._store.set_mirror_status(lead_id, status)
                except Exception as e:  # noqa: BLE001 - the catch-up job repairs a missed write
                    log.warning("mirror status not recorded", extra={"lead_id": lead_id, "reason": repr(e)})

    async def drain(self) -> None:
        """Wait for the writes already noted (at shutdown, before the store closes)."""
        await asyncio.sleep(0)  # futures settled just before run their callbacks (note) first
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
