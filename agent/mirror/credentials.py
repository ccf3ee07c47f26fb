"""Service-account credentials for the Sheets mirror: where they come from and early checks.

Errors name the setting to fix and never echo the key material: a start-up log line is not a
safe place for a private key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.oauth2 import service_account

from agent.errors import ConfigError

__all__ = ["GOOGLE_TOKEN_URI", "SCOPES", "load_credentials", "make_credentials", "validate_info"]

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# We always open by key or URL, so the Drive scope is never needed.
SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)


def load_credentials(json_text: str | None, path: str | None) -> dict[str, Any]:
    """Service-account info from ``GOOGLE_CREDENTIALS_JSON`` (wins) or ``sheets.credentials_file``."""
    if json_text is not None and json_text.strip():
        source = "GOOGLE_CREDENTIALS_JSON"
        text = json_text
    elif path:
        source = f"sheets.credentials_file ({path})"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such file; point it at the service account's JSON key file") from None
        except OSError as exc:
            raise ConfigError(
                f"{source}: cannot be read ({exc.strerror}); check the path and its permissions") from None
    else:
        raise ConfigError(
            "sheets: no credentials; set GOOGLE_CREDENTIALS_JSON to the service account's JSON key, "
            "or sheets.credentials_file to the key file's path (or set sheets.enabled = false)"
        )
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg/lineno/colno describe the position only, never the content.
        raise ConfigError(
            f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "use the key file Google Cloud gave you for the service account, unchanged"
        ) from None
    validate_info(info, source)
    return info


def validate_info(info: Any, source: str) -> None:
    """Fail early, with the setting's name, on a key google-auth would reject later."""
    if not isinstance(info, dict):
        raise ConfigError(f"{source}: expected a JSON object (a service account key file)")
    if info.get("type") != "service_account":
        raise ConfigError(
            f"{source}: \"type\" is {info.get('type')!r}, expected \"service_account\"; "
            "create a key for a service account (not an OAuth client secret)"
        )
    missing = [k for k in ("client_email", "private_key") if not info.get(k)]
    if missing:
        raise ConfigError(f"{source}: missing {', '.join(missing)}; download a fresh key for the service account")
    try:
        make_credentials(info)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{source}: private_key could not be loaded; download a fresh key for the service account") from None


def make_credentials(info: dict[str, Any]) -> service_account.Credentials:
    """google-auth credentials for ``info``; Google's token endpoint unless the key names another."""
    return service_account.Credentials.from_service_account_info(
        {"token_uri": GOOGLE_TOKEN_URI, **info}, scopes=list(SCOPES))
