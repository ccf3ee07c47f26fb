"""Intake: how leads come in. The HTTP webhook, the IMAP inbox and their shared batching.

``webhook`` and ``openapi`` serve ``POST /leads`` and the admin API; ``access`` holds webhook
auth and rate limiting; ``batching`` groups concurrent intakes into one store transaction;
``inbox`` polls mailboxes (scheduling and leadership), ``imap`` and ``imap_auth`` are the IMAP
adapter (``mailbox_erase``: ``forget --mailbox`` over it), ``email_parse`` turns a raw mail into
a lead. Modules here may import ``agent.core``,
``agent.config``, ``agent.errors`` and the metrics object; never ``agent.app`` wiring or a store.
"""
