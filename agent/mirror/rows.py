"""One lead as one sheet row: which columns exist and how each cell is written.

The columns a user may choose are ``agent.config.SHEET_COLUMNS`` (one list, used both when the
settings are checked and here); every value is text, cut to the 50,000 characters Google allows
in a cell, and written RAW so nothing in it is ever evaluated as a formula.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime

from agent.config import DEFAULT_SHEET_COLUMNS, SHEET_COLUMNS
from agent.core.models import Lead
from agent.errors import ConfigError

__all__ = ["CELL_LIMIT", "DEFAULT_COLUMNS", "RowFormat"]

# Google's limit on the characters in one cell.
CELL_LIMIT = 50_000
DEFAULT_COLUMNS = list(DEFAULT_SHEET_COLUMNS)
DEFAULT_CATEGORY_LABELS = {"sales": "Ventas", "support": "Soporte", "info": "Información", "spam": "Spam"}
DEFAULT_PRIORITY_LABELS = {"high": "Alta", "medium": "Media", "low": "Baja"}


class RowFormat:
    """The chosen columns and labels; ``row(lead)`` gives the cells in column order."""

    def __init__(
        self, columns: list[str] | None, category_labels: dict[str, str] | None,
        priority_labels: dict[str, str] | None,
    ) -> None:
        self.columns = list(columns) if columns is not None else list(DEFAULT_COLUMNS)
        unknown = [c for c in self.columns if c not in SHEET_COLUMNS]
        if unknown:
            raise ConfigError(f"sheets.columns: unknown column(s) {unknown}; choose from {list(SHEET_COLUMNS)}")
        if "id" not in self.columns:
            raise ConfigError("sheets.columns must include \"id\": it is how the mirror avoids duplicate rows")
        self._category_labels = dict(DEFAULT_CATEGORY_LABELS if category_labels is None else category_labels)
        self._priority_labels = dict(DEFAULT_PRIORITY_LABELS if priority_labels is None else priority_labels)

    def row(self, lead: Lead) -> list[str]:
        return [self._cell(lead, c)[:CELL_LIMIT] for c in self.columns]

    def _cell(self, lead: Lead, column: str) -> str:
        if column == "received_at":
            return iso_utc(lead.created_at)
        if column == "category":
            return self._category_labels.get(str(lead.category), str(lead.category)) if lead.category else ""
        if column == "priority":
            return self._priority_labels.get(str(lead.priority), str(lead.priority)) if lead.priority else ""
        value = getattr(lead, column, None)
        if value is None:
            return ""
        if isinstance(value, datetime):
            return iso_utc(value)
        if isinstance(value, enum.Enum):
            return str(value.value)
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False, default=str)
        return str(value)


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a Z; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
