"""The base of every settings section: unknown keys refused, booleans strict."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_bool(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic would take "yes", "on" or 1 for a bool: a typo must not switch a feature on.
        if info.field_name and cls.model_fields[info.field_name].annotation is bool and not isinstance(v, bool):
            raise ValueError("must be true or false")
        return v
