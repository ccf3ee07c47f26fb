"""The application: wiring the adapters into one daemon, and what runs around it.

``wiring`` holds the make_* factories, ``daemon`` owns the event loop, the HTTP server, the
scheduler's jobs and shutdown, ``metrics`` and ``logs`` are observability, ``inbox_commands`` the
one-shot inbox commands. The app may import every other package; nothing imports the app except
``agent.cli``, except the metrics object that intake and core report to.
"""
