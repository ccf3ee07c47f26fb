"""Shared fixtures: real servers started once per session (see tests/fixtures/).

The suite runs in a clean environment: a developer's exported LEADBOX_<SECTION>__<KEY>, secrets
(OPENAI_API_KEY, DATABASE_URL, ...) and their .env never reach the code under test.
"""

import os

from agent.config import ENV_NAMES


def _scrub_environment() -> None:
    for name in list(os.environ):
        settings_override = name.startswith("LEADBOX_") and "__" in name
        # OPENAI_* and GOOGLE_* are also read by the openai and google-auth libraries themselves.
        if name in ENV_NAMES or settings_override or name.startswith(("OPENAI_", "GOOGLE_")):
            del os.environ[name]
    os.environ["LEADBOX_DOTENV"] = "0"  # every `leadbox` the tests start ignores a .env


_scrub_environment()

# tests/container builds and runs the image on a real engine: `make test-container` runs them
# (with LEADBOX_CONTAINER_TESTS=1), `make test` does not collect them.
collect_ignore = [] if os.environ.get("LEADBOX_CONTAINER_TESTS") == "1" else ["container"]

pytest_plugins = [
    "tests.fixtures.mailservers",
    "tests.fixtures.openai_fake",
    "tests.fixtures.sheets_fake",
    "tests.fixtures.daemon",
    "tests.fixtures.postgres",
    "tests.fixtures.browser",
]
