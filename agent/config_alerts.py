"""``[alerts]``: tell the team when a lead that matters arrives (webhook, e-mail, digest)."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from agent.config_base import Section

__all__ = ["AlertsConfig"]


class AlertsConfig(Section):
    """Team alerts for the leads that matter; signed with LEADBOX_ALERTS_SECRET when it is set."""

    min_priority: Literal["", "low", "medium", "high"] = Field(
        "high", description='Alert for leads at or above this priority ("" = off).')
    categories: list[str] = Field(
        default_factory=list, description="Limit to these categories (empty = all but spam; spam never alerts).")
    webhook_url: str = Field("", description="POST one JSON per lead here (empty = no webhook alerts).")
    webhook_format: Literal["json", "slack", "teams"] = Field(
        "json", description="json | slack (Slack/Mattermost incoming-webhook text) | teams.")
    email_to: str = Field(
        "", description="Team address(es), comma-separated, sent through the reply transport (empty = none).")
    digest_cron: str = Field(
        "", description='A summary e-mail of the leads since the last digest, as a crontab line '
        '("0 8 * * 1-5"; empty = none); needs email_to.')
    timezone: str = Field("Europe/Madrid", description="Time zone of digest_cron.")
    timeout: float = Field(10.0, gt=0, description="Seconds per webhook request.")
    retry_base: float = Field(2.0, gt=0, description="First retry delay in seconds; doubles up to retry_max.")
    retry_max: float = Field(600.0, gt=0, description="Longest delay between retries, in seconds.")
    give_up_hours: float = Field(
        24.0, gt=0, description="An alert still not delivered this long after the lead is marked failed.")

    @field_validator("categories")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        known = {"sales", "support", "info", "spam"}
        bad = [c for c in v if c not in known]
        if bad:
            raise ValueError(f"unknown categories {bad}; allowed: {sorted(known)}")
        return v

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, v: str) -> str:
        v = v.strip()
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone name (e.g. Europe/Madrid, UTC)") from None
        return v

    @field_validator("digest_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        v = v.strip()
        if v:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(v, timezone="UTC")
            except ValueError as e:
                raise ValueError(f"not a crontab line of 5 fields ({e})") from None
        return v

    def recipients(self) -> list[str]:
        return [a.strip() for a in self.email_to.split(",") if a.strip()]

    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, on in (("webhook", bool(self.webhook_url)), ("email", bool(self.recipients()))) if on)
