"""Typed schema of features, tasks and pipelines; YAML loading with errors that name file and field."""

from recsys_mtl.spec.features import (
    CategoricalFeature,
    Feature,
    FeatureSpec,
    HashConfig,
    MissingPolicy,
    NumericFeature,
    SequenceFeature,
    Task,
    VocabConfig,
)
from recsys_mtl.spec.loading import load_spec, load_pipeline
from recsys_mtl.spec.pipeline import PipelineConfig

__all__ = [
    "CategoricalFeature",
    "Feature",
    "FeatureSpec",
    "HashConfig",
    "MissingPolicy",
    "NumericFeature",
    "PipelineConfig",
    "SequenceFeature",
    "Task",
    "VocabConfig",
    "load_pipeline",
    "load_spec",
]
