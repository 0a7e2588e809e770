"""The strict pydantic base of every spec and pipeline model (lowest floor: feature kinds and the spec
both build on it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """``extra="forbid"`` so a typo in the YAML is an error, never a silently ignored key; frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
