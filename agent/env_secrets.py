"""What comes only from the environment: the secrets and the names of every variable leadbox reads.

Secrets never go into config/agent.toml; ``agent.config`` joins them with the settings into a
``Config``, and every output masks them (``agent.config_docs.effective``, the log filter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Every variable leadbox reads besides the LEADBOX_<SECTION>__<KEY> overrides.
ENV_NAMES = (
    "OPENAI_API_KEY", "EMAIL_USER", "EMAIL_PASS", "GOOGLE_CREDENTIALS_JSON", "DATABASE_URL",
    "LEADBOX_ADMIN_TOKEN", "LEADBOX_WEBHOOK_SECRET", "GOOGLE_OAUTH_CLIENT_ID",
    "GOOGLE_OAUTH_CLIENT_SECRET", "GOOGLE_OAUTH_REFRESH_TOKEN", "INBOX_OAUTH_TOKEN",
    "LEADBOX_CONFIG", "LEADBOX_DOTENV", "LEADBOX_SECRET_KEY", "LEADBOX_ALERTS_SECRET",
)


@dataclass(frozen=True)
class Secrets:
    """Secrets and deployment settings, only from the environment."""

    openai_api_key: str = ""
    email_user: str = ""
    email_pass: str = ""
    google_credentials_json: str = ""
    database_url: str = ""
    admin_token: str = ""
    webhook_secret: str = ""
    google_oauth_client_id: str = ""
    google_oauth_client_secret: str = ""
    google_oauth_refresh_token: str = ""
    inbox_oauth_token: str = ""
    secret_key: str = ""  # signs console sessions; random per process when empty
    alerts_secret: str = ""  # signs webhook alerts (X-Leadbox-Signature)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Secrets:
        g = lambda k: env.get(k, "").strip()  # noqa: E731
        return cls(
            openai_api_key=g("OPENAI_API_KEY"),
            email_user=g("EMAIL_USER"),
            email_pass=env.get("EMAIL_PASS", ""),
            google_credentials_json=env.get("GOOGLE_CREDENTIALS_JSON", ""),
            database_url=g("DATABASE_URL"),
            admin_token=g("LEADBOX_ADMIN_TOKEN"),
            webhook_secret=g("LEADBOX_WEBHOOK_SECRET"),
            google_oauth_client_id=g("GOOGLE_OAUTH_CLIENT_ID"),
            google_oauth_client_secret=g("GOOGLE_OAUTH_CLIENT_SECRET"),
            google_oauth_refresh_token=g("GOOGLE_OAUTH_REFRESH_TOKEN"),
            inbox_oauth_token=g("INBOX_OAUTH_TOKEN"),
            secret_key=g("LEADBOX_SECRET_KEY"),
            alerts_secret=g("LEADBOX_ALERTS_SECRET"),
        )

    def values(self) -> list[str]:
        """Every non-empty secret value (for log redaction)."""
        return [v for v in vars(self).values() if v]
