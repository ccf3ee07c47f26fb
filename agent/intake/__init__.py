"""Intake: how leads come in. The HTTP webhook, the IMAP inbox and their shared batching.

``webhook`` and ``openapi`` serve ``POST /leads`` and the admin API; ``access`` holds webhook
auth and rate limiting; ``batching`` groups concurrent intakes into one store transaction;
``inbox`` polls mailboxes (scheduling, leadership, IDLE), ``imap`` and ``imap_auth`` are the IMAP
adapter (``mailbox_erase``: ``forget --mailbox`` over it), ``parse_pool`` parses off the event
loop, ``email_parse`` turns a raw mail into a lead and ``inbox_record`` writes what each mail
became. Modules here may import ``agent.core``,
``agent.config``, ``agent.errors`` and the metrics object; never ``agent.app`` wiring or a store.
"""
