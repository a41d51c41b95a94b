"""The base of every config section: unknown keys rejected, field docstrings kept, assignments validated."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Auto = Literal["auto"]
PositiveInt = Annotated[int, Field(ge=1)]


class Section(BaseModel):
    """A config section: each field is documented by the docstring under it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)
