"""The one formatter of pydantic validation errors: locations as written, union tags dropped,
unknown keys with a "did you mean" hint from the schema at that place."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys_mtl.errors import format_validation_error


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Numeric(Strict):
    kind: Literal["numeric"]
    name: str
    clip: float = Field(1.0, gt=0)


class Categorical(Strict):
    kind: Literal["categorical"]
    name: str
    min_freq: int = 1


class Trainer(Strict):
    max_epochs: int = Field(3, ge=1)
    batch_size: int = 32


class Config(Strict):
    features: list[Annotated[Union[Numeric, Categorical], Field(discriminator="kind")]]
    trainer: Trainer = Trainer()
    tables: dict[str, Trainer] = {}


def error(raw: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        Config.model_validate(raw)
    return exc.value


FEATURES = [{"kind": "categorical", "name": "city"}]


def test_location_reads_as_written_with_item_names_and_no_union_tags() -> None:
    raw = {"features": [*FEATURES, {"kind": "numeric", "name": "age", "clip": -1}]}
    assert format_validation_error(error(raw), source="spec.yaml", raw=raw, model=Config) == (
        "spec.yaml: features[1] (age).clip: Input should be greater than 0"
    )


def test_unknown_key_gets_a_hint_from_the_fields_declared_at_that_place() -> None:
    raw = {"features": [{"kind": "categorical", "name": "city", "min_freqs": 2}], "trainer": {"max_epoch": 5},
           "tables": {"t": {"batch_sise": 1}}}
    lines = format_validation_error(error(raw), source="p.yaml", raw=raw, model=Config).splitlines()
    assert lines == [
        "p.yaml: features[0] (city).min_freqs: unknown key (did you mean 'min_freq'?)",
        "p.yaml: trainer.max_epoch: unknown key (did you mean 'max_epochs'?)",
        "p.yaml: tables.t.batch_sise: unknown key (did you mean 'batch_size'?)",
    ]


def test_missing_field_prefix_separator_and_limit() -> None:
    raw = {"features": [{"kind": "numeric"}], "trainer": {"max_epochs": 0, "batch_size": "x"}, "bogus": 1}
    exc = error(raw)
    assert format_validation_error(exc, prefix="tune", raw=raw, sep="; ", limit=2) == (
        "tune.features[0].name: Field required; tune.trainer.max_epochs: Input should be greater than or equal to 1; (and 2 more)"
    )
    # without the input, locations are pydantic's own (tags included) and no hint is given
    assert "features[0].numeric.name" in format_validation_error(exc, unknown="unknown parameter")
    assert "bogus: unknown parameter" in format_validation_error(exc, unknown="unknown parameter")


def test_errors_at_the_top_are_named() -> None:
    with pytest.raises(ValidationError) as exc:
        Trainer.model_validate("not a mapping")
    assert format_validation_error(exc.value, source="f.json") == "f.json: <top>: Input should be a valid dictionary or instance of Trainer"
