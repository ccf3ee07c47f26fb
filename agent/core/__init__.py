"""The core: what a lead is, the contracts its adapters meet, and the one pipeline it goes through.

Models and states, the Protocols in ``ports``, the pipeline steps and the worker that runs them,
priority rules, loop protection, validation, text cleaning and reply composition. Modules here
import only the standard library, pydantic, ``agent.config``, ``agent.errors`` and each other:
never an adapter library (aiohttp, imapclient, openai, gspread, google, smtplib, sqlite3,
psycopg, aiosmtpd). A test walks every module's imports to keep it so.
"""
