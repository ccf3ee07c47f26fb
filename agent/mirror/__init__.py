"""Mirrors: adapters of ``core.ports.Mirror`` that copy leads somewhere people look.

``sheets`` appends rows to a Google Sheet through gspread; beside it, ``credentials`` (the
service-account key), ``endpoint`` (pointing gspread at another server), ``errors`` (what a failed
call means), ``rows`` (a lead as cells), ``batcher`` (the queue and its flush task) and ``check``
(`leadbox sheets check`). Modules here import ``agent.core``, ``agent.config`` and
``agent.errors`` only.
"""
