"""The alert ledger's SQL, shared by both stores (``?`` placeholders; PostgreSQL swaps in ``%s``).

One row per (lead, channel): ``pending`` until the channel took it, then ``sent``, or ``failed``
when it gave up. The insert is idempotent, so the step that decides priority may run twice.
"""

from __future__ import annotations

from typing import Any

from agent.core.alerts import AlertRow

ENQUEUE = ("INSERT INTO alerts (lead_id, channel, status, attempts, next_attempt_at, created_at) "
           "VALUES (?, ?, 'pending', 0, ?, ?) ON CONFLICT (lead_id, channel) DO NOTHING")
DUE = ("SELECT * FROM alerts WHERE status = 'pending' AND next_attempt_at <= ? "
       "ORDER BY next_attempt_at, lead_id LIMIT ?")
RESULT = ("UPDATE alerts SET status = ?, attempts = ?, next_attempt_at = ?, sent_at = ?, last_error = ? "
          "WHERE lead_id = ? AND channel = ?")
OF_LEAD = "SELECT * FROM alerts WHERE lead_id = ? ORDER BY channel"
DIGEST_GET = "SELECT last_at FROM alert_digest WHERE id = 1"
DIGEST_SET = ("INSERT INTO alert_digest (id, last_at) VALUES (1, ?) "
              "ON CONFLICT (id) DO UPDATE SET last_at = excluded.last_at")
SINCE = "SELECT * FROM leads WHERE created_at >= ? AND created_at < ? ORDER BY created_at, id LIMIT ?"


def to_row(r: Any) -> AlertRow:
    return AlertRow(lead_id=r["lead_id"], channel=r["channel"], status=r["status"], attempts=int(r["attempts"]),
                    created_at=float(r["created_at"]), next_attempt_at=float(r["next_attempt_at"]),
                    sent_at=float(r["sent_at"]) if r["sent_at"] is not None else None, last_error=r["last_error"])
