"""Classifiers: adapters of ``core.ports.Classifier``.

``local`` is the offline classifier (rules plus a small model shipped in ``data/``), ``llm`` the
OpenAI-compatible backend with its circuit ``breaker`` that falls back to the local one, and
``evaluation`` scores any classifier on labelled JSONL. Modules here import ``agent.core`` and
each other, never intake, stores or the app.
"""
