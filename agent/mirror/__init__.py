"""Mirrors: adapters of ``core.ports.Mirror`` that copy leads somewhere people look.

``sheets`` appends rows to a Google Sheet through gspread. Modules here import ``agent.core``,
``agent.config`` and ``agent.errors`` only.
"""
