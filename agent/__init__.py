"""leadbox: every inbound contact becomes a triaged, answered lead.

The layout shows the design (see docs/architecture.md): ``core`` is the pipeline and its
contracts, with no adapter library; ``intake`` brings leads in (HTTP webhook, IMAP inbox);
``classifiers``, ``stores``, ``mail`` and ``mirror`` are adapters behind the Protocols in
``core.ports``; ``app`` wires them into one daemon. ``cli``, ``config`` and ``errors`` sit on top.
"""
