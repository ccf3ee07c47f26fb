"""Shared fixtures: real servers started once per session (see tests/fixtures/)."""

pytest_plugins = [
    "tests.fixtures.mailservers",
    "tests.fixtures.openai_fake",
    "tests.fixtures.sheets_fake",
    "tests.fixtures.daemon",
    "tests.fixtures.postgres",
]
