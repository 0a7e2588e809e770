"""Typed search-space parameters (float / int / categorical) and how choices travel through Optuna."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

import optuna
from pydantic import Field, field_validator, model_validator

from recsys_mtl.strict import StrictModel

Scalar = Union[bool, int, float, str, None]


class _Param(StrictModel):
    when: dict[str, Union[Scalar, list[Scalar]]] = {}
    """active only when each named path (earlier parameter or fixed pipeline value) has this value / one of these values."""


class FloatParam(_Param):
    type: Literal["float"]
    """`float`"""
    low: float
    """lowest value"""
    high: float
    """highest value"""
    log: bool = False
    """sample on a log scale (needs low > 0)"""
    step: float | None = Field(None, gt=0)
    """sample on a grid of this step from `low` (null: continuous)"""

    @model_validator(mode="after")
    def _bounds(self) -> "FloatParam":
        check_bounds(self.low, self.high, self.log, self.step)
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high
        return ok and (self.step is None or abs((value - self.low) / self.step - round((value - self.low) / self.step)) < 1e-9)

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


class IntParam(_Param):
    type: Literal["int"]
    """`int`"""
    low: int
    """lowest value"""
    high: int
    """highest value"""
    step: int = Field(1, ge=1)
    """sample every this many values from `low`"""
    log: bool = False
    """sample on a log scale (needs low > 0 and step 1)"""

    @model_validator(mode="after")
    def _bounds(self) -> "IntParam":
        check_bounds(self.low, self.high, self.log, self.step if self.step != 1 else None)
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high and (value - self.low) % self.step == 0

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


class CategoricalParam(_Param):
    """Choices may be lists or mappings (e.g. layer sizes); Optuna stores those as JSON strings."""

    type: Literal["categorical"]
    """`categorical`"""
    choices: list[Any] = Field(min_length=1)
    """the values to choose from (scalars, lists or mappings; distinct)"""

    @field_validator("choices")
    @classmethod
    def _distinct(cls, choices: list[Any]) -> list[Any]:
        keys = [encode_choice(c) for c in choices]
        if len(set(keys)) != len(keys):
            raise ValueError("choices must be distinct")
        return choices

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return decode_choice(trial.suggest_categorical(name, [encode_choice(c) for c in self.choices]))

    def contains(self, value: Any) -> bool:
        return encode_choice(value) in {encode_choice(c) for c in self.choices}

    def candidates(self) -> list[Any]:
        return list(self.choices)


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


def check_bounds(low: float, high: float, log: bool, step: float | None) -> None:
    if low > high:
        raise ValueError(f"low ({low}) > high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0 (got {low})")
    if log and step is not None:
        raise ValueError("step and log cannot be combined")


def encode_choice(value: Any) -> Scalar:
    """A choice as Optuna stores it: scalars as they are, lists and mappings as JSON strings."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def decode_choice(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value
