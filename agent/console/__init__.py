"""The lead console: server-rendered pages under ``/console`` where a team sees and handles leads.

``routes`` holds the aiohttp handlers, ``session`` the signed cookie, CSRF tokens and sign-in
throttling, ``passwords`` the scrypt hashes of named users, ``i18n`` the UI's own words (es/en),
``chart`` the server-rendered SVG, ``templates/`` the Jinja2 pages and ``static/`` the CSS (no
CDN, no build chain, no JavaScript needed). The console is an adapter on the HTTP app: it may
import ``agent.core``, ``agent.config`` and the intake's host Protocol, never a store engine.
"""
