"""The pipeline's ``encoder:`` section, typed: how features become the model's input vector.

The section sits beside ``model`` because these options belong to the encoder every family
shares, not to one family's parameters. Each model class declares the options it takes in
:attr:`~recsys_mtl.models.base.MultiTaskModel.encoder_options`; ``build_model`` refuses a set
option the chosen family does not take.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from recsys_mtl.errors import SpecError, format_validation_error
from recsys_mtl.nn.cross_network import CrossConfig
from recsys_mtl.nn.gbdt_leaves import GBDTLeavesConfig
from recsys_mtl.nn.id_counts import IdCountsConfig
from recsys_mtl.nn.id_dropout import IdDropoutConfig
from recsys_mtl.nn.id_regularization import IdRegularizationConfig
from recsys_mtl.nn.numeric_embeddings import NumericEmbeddingConfig
from recsys_mtl.nn.wide import WideConfig
from recsys_mtl.strict import ParamsModel


class EmbeddingDimConfig(ParamsModel):
    """``encoder.embedding_dim: {rule: auto, multiplier: 6, max_dim: 32}``: each vocabulary table's
    embedding width from its row count, ``min(max_dim, max(min_dim, round(multiplier · rows^0.25)))``
    (the rule of thumb of the TensorFlow feature-column guide and fastai), instead of the spec's
    ``embedding_dim``. Tables of quantile-bucketed numerics keep the spec's width."""

    rule: Literal["auto"] = "auto"
    """`auto`: the rule above (the only one)"""
    multiplier: float = Field(6.0, gt=0)
    """the multiplier of rows^0.25"""
    min_dim: int = Field(2, ge=1)
    """smallest width"""
    max_dim: int = Field(32, ge=1)
    """largest width"""

    def dim(self, rows: int) -> int:
        return int(min(self.max_dim, max(self.min_dim, round(self.multiplier * rows ** 0.25))))


class EncoderConfig(ParamsModel):
    """The ``encoder:`` section of a pipeline (every field optional)."""

    numeric_embedding: NumericEmbeddingConfig | None = None
    """numeric values → per-feature embeddings (null: the standardized numbers as they are; token models: their own default,
    linear or periodic)
    """
    id_dropout: IdDropoutConfig = Field(default_factory=IdDropoutConfig)
    """share of training ids mapped to the OOV row (default: 5% on tables of ≥ 1000 rows)"""
    id_regularization: IdRegularizationConfig | None = None
    """rarity-aware L2 on the id embedding rows of each batch, and max-norm (null: off)"""
    wide: WideConfig | None = None
    """one scalar per id and task added to the task's logit, shrunk for rare ids (null: off)"""
    id_counts: IdCountsConfig | None = None
    """each selected id's log train count as an input (its popularity; null: off)"""
    embedding_dim: EmbeddingDimConfig | None = None
    """embedding widths from table sizes (null: the spec's embedding_dim)"""
    standardize_targets: bool = True
    """regression heads predict the train-standardized label, mapped back to label units"""
    gbdt_leaves: GBDTLeavesConfig | None = None
    """GBDT leaf indices as extra inputs (trees fitted on train before training; null: off)"""
    cross: CrossConfig | None = None
    """a DCN-v2 cross network between the encoder and the model (flat-input models only)"""

    def set_options(self) -> list[str]:
        """Fields that differ from their defaults (what a model must be able to take)."""
        defaults = EncoderConfig()
        return [name for name in type(self).model_fields if getattr(self, name) != getattr(defaults, name)]


def encoder_config(raw: dict[str, Any] | EncoderConfig) -> EncoderConfig:
    """The pipeline's free-form ``encoder`` dict, validated; errors name ``encoder.<field>``."""
    if isinstance(raw, EncoderConfig):
        return raw
    try:
        return EncoderConfig.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, prefix="encoder", raw=raw, model=EncoderConfig,
                                                unknown="unknown option", sep="; ")) from None
