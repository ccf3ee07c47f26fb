"""Mail transports: adapters of ``core.ports.MailTransport`` that send the replies the core composed.

``smtp`` sends over SMTP (implicit TLS or STARTTLS, AUTH) with a two-phase ledger so a reply is
never sent twice; ``outbox`` writes .eml files to a folder. They import ``agent.core`` and
``agent.errors`` only.
"""
