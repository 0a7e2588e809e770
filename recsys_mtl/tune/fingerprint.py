"""What a study's trials measured: the pipeline minus what a trial sets or what cannot change a trial.

A study resumed with another pipeline (other data, spec, epochs, ``trial_overrides``, proxy share, ...)
would rank trials measured under two objectives against each other. At creation the study records
:func:`pipeline_identity` (a readable, canonical copy) and its SHA-256 as user attributes; on resume
:func:`changes` lists the fields that differ, by dotted path.

Left out of the identity, because a trial does not depend on them: ``name``, ``runs_dir``, ``export``,
``baselines``, ``data.cache_dir`` (generated data is keyed by its settings), ``trainer.progress_bar``,
``trainer.mlflow``, the spec's ``description``; of the ``tune`` section everything but ``objective``,
``trial_overrides`` and ``train_fraction`` (``n_trials``, ``timeout``, ``storage``, sampler, pruner,
``space``, ``enqueue``, refit settings, heartbeats, plots: they steer the search or the refit, not what a
trial's value means); and every searched path (each trial sets its own value). The spec enters by
content, not by file path; so do data files (:func:`~recsys_mtl.tune.file_signature.signature`: names
relative to their folder, sizes, hashes of each file's ends), so that a study resumed from another
checkout, or by a worker on a machine that mounts the data elsewhere, is the same study.

Studies recorded before data entered by content (:func:`path_identity`, absolute paths) still resume on
their machine: :func:`recorded_by_path` recognises them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.tune.file_signature import signature
from recsys_mtl.tune.space import TuneConfig

#: study user attributes written at creation
FINGERPRINT_ATTR, PIPELINE_ATTR = "pipeline_fingerprint", "pipeline"
#: top-level pipeline fields no trial depends on
_DROP_TOP = ("name", "runs_dir", "export", "baselines", "tune")
#: dotted paths no trial depends on
_DROP_PATHS = ("data.cache_dir", "trainer.progress_bar", "trainer.mlflow", "spec.description")
#: the tune fields that change what a trial measures
_TUNE_KEPT = ("objective", "trial_overrides", "train_fraction")
_ABSENT = object()


def pipeline_identity(cfg: PipelineConfig, spec: FeatureSpec, tune: TuneConfig) -> dict[str, Any]:
    """The canonical (JSON-able) pipeline a study's trials share: see the module docstring for what is left out."""
    raw = path_identity(cfg, spec, tune)
    data = raw["data"]
    for name in type(cfg.data).model_fields:  # found by type, so a new data kind's paths are covered unlisted
        value = getattr(cfg.data, name)
        if isinstance(value, Path) and name in data:
            data[name] = signature(value)
    return raw


def path_identity(cfg: PipelineConfig, spec: FeatureSpec, tune: TuneConfig) -> dict[str, Any]:
    """:func:`pipeline_identity` with data files by absolute path: what studies recorded before content signatures."""
    raw: dict[str, Any] = json.loads(cfg.model_dump_json())
    for key in _DROP_TOP:
        raw.pop(key, None)
    raw["spec"] = json.loads(spec.model_dump_json())
    raw["tune"] = {k: v for k, v in json.loads(tune.model_dump_json()).items() if k in _TUNE_KEPT}
    for path in (*_DROP_PATHS, *tune.space):
        _drop(raw, path)
    return raw


def recorded_by_path(recorded: str, cfg: PipelineConfig, spec: FeatureSpec, tune: TuneConfig) -> bool:
    """Whether fingerprint ``recorded`` is this pipeline's as studies recorded it before data entered by content."""
    return fingerprint(path_identity(cfg, spec, tune)) == recorded


def fingerprint(identity: dict[str, Any]) -> str:
    """SHA-256 of the identity's canonical JSON (sorted keys): equal pipelines, equal strings."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``path: old -> new`` for every leaf that differs (``<absent>`` where a side lacks it), sorted by path."""
    a, b = _flatten(old), _flatten(new)
    return [f"{p}: {_show(a, p)} -> {_show(b, p)}" for p in sorted(set(a) | set(b)) if a.get(p, _ABSENT) != b.get(p, _ABSENT)]


def _drop(raw: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    node: Any = raw
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path -> leaf; lists are leaves (a changed layer list is one change), empty mappings add nothing."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def _show(leaves: dict[str, Any], path: str) -> str:
    return json.dumps(leaves[path]) if path in leaves else "<absent>"
