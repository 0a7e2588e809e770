"""Incremental training (``fit --init-from RUN``): grow the vocabularies, carry the weights over.

On new data the earlier run's preprocessing is extended, not refitted:

- every fitted vocabulary keeps its values at their indices and appends the values the new
  training data adds (in the new fit's order: count descending, then value); hashed tables
  and numeric transforms (impute values, standardisation, quantile edges) stay as they were,
  so the carried weights see their inputs on the scale they were trained on;
- the model is built for the grown layout; every weight is copied from the earlier run, and an
  embedding table's rows of known values are copied while the rows of new values keep the fresh
  initialisation of :class:`~recsys_mtl.nn.encoders.EmbeddingTables`;
- ``drift.json`` records what changed between the earlier preprocessing and a fit on the new
  data: vocabulary growth per table, out-of-vocabulary rates of the new validation rows under
  the earlier and the grown vocabularies, and numeric statistics side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from recsys_mtl.features.fitted import OOV, FittedTable
from recsys_mtl.data.preprocess import Preprocessor, spec_hash
from recsys_mtl.data.sources import DataSource
from recsys_mtl.errors import DataError
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.train.optim import embedding_tables
from recsys_mtl.train.run_folder import load_run


@dataclass
class Start:
    """Where an incremental fit starts: the grown preprocessing, the earlier model, the drift."""

    run_dir: Path
    preprocessor: Preprocessor
    model: nn.Module
    drift: dict[str, Any]


def start_from(run_dir: Path, spec: FeatureSpec, source: DataSource) -> Start:
    """Read the earlier run, fit preprocessing on the new training data, grow, report the drift."""
    earlier = load_run(run_dir)
    if spec_hash(earlier.spec) != spec_hash(spec):
        raise DataError(f"--init-from {run_dir}: trained with a different feature spec; incremental training needs the same spec")
    refit = source.fit_preprocessing(spec)
    grown = grow(earlier.preprocessor, refit)
    drift = {"init_from": str(Path(run_dir).resolve()), **drift_report(earlier.preprocessor, refit, grown, source.valid())}
    return Start(Path(run_dir), grown, earlier.model, drift)


def grow(old: Preprocessor, new: Preprocessor) -> Preprocessor:
    """``old`` with each vocabulary extended by the values ``new`` (same spec) has and ``old`` lacks."""
    tables: dict[str, FittedTable] = {}
    for name, t in old.tables.items():
        if t.vocab is None:
            tables[name] = t
            continue
        known = set(t.vocab)
        added = [v for v in new.tables[name].vocab or [] if v not in known]
        tables[name] = replace(t, vocab=[*t.vocab, *added])
    # pair-count tables (cooccurrence) stay as first fitted, like the numeric statistics
    return Preprocessor(old.spec, tables, {k: replace(v) for k, v in old.numeric.items()}, pairs=dict(old.pairs))


def carry_weights(model: nn.Module, earlier: nn.Module) -> dict[str, int]:
    """Copy ``earlier``'s weights into ``model`` (built for a grown layout); returns new rows per table.

    Embedding tables may have grown: their first rows (missing, OOV, the earlier vocabulary) are
    copied and the rest keep ``model``'s initialisation. Any other shape change is an error.
    """
    grown_tables = {f"{name}.weight": emb for name, emb in embedding_tables(model).items()}
    old_state = earlier.state_dict()
    new_state = model.state_dict()
    added: dict[str, int] = {}
    with torch.no_grad():
        for key, value in new_state.items():
            if key not in old_state:
                raise DataError(f"--init-from: the earlier model has no weight {key!r}; use the same model and parameters")
            old = old_state[key]
            if old.shape == value.shape:
                value.copy_(old)
            elif key in grown_tables and old.shape[1:] == value.shape[1:] and old.shape[0] < value.shape[0]:
                value[: old.shape[0]].copy_(old)
                added[key.removesuffix(".weight")] = value.shape[0] - old.shape[0]
            else:
                raise DataError(f"--init-from: weight {key!r} has shape {tuple(old.shape)} in the earlier run, {tuple(value.shape)} now")
    model.load_state_dict(new_state)
    return added


def drift_report(old: Preprocessor, refit: Preprocessor, grown: Preprocessor, valid: pl.DataFrame) -> dict[str, Any]:
    """Vocabulary growth, OOV rates of ``valid`` (the new validation rows), numeric statistics.

    ``refit`` is the preprocessing fitted on the new training data alone: its statistics are
    compared with ``old``'s; ``grown`` is what the new run trains with.
    """
    vocab = {}
    for name, t in old.tables.items():
        if t.vocab is None:
            continue
        size, new_size = len(t.vocab), len(grown.tables[name].vocab or [])
        refit_vocab = set(refit.tables[name].vocab or [])
        vocab[name] = {
            "earlier": size, "grown": new_size, "added": new_size - size,
            "growth": round(new_size / size - 1, 6) if size else None,
            # earlier values the new training data no longer holds often enough to be in a refit
            "absent_from_new_data": sum(1 for v in t.vocab if v not in refit_vocab),
        }
    oov = {}
    old_enc, grown_enc = old.transform(valid, "new validation split"), grown.transform(valid, "new validation split")
    for i, (feature, table) in enumerate(old.layout.categorical):
        if table not in vocab:
            continue
        present = old_enc.categorical[:, i] != 0
        n = max(int(present.sum()), 1)
        oov[feature] = {
            "earlier_vocab": round(float(((old_enc.categorical[:, i] == OOV) & present).sum()) / n, 6),
            "grown_vocab": round(float(((grown_enc.categorical[:, i] == OOV) & present).sum()) / n, 6),
        }
    numeric = {}
    for name, a in old.numeric.items():
        b = refit.numeric[name]
        entry: dict[str, Any] = {
            "impute_value": [a.impute_value, b.impute_value],
            "mean": [a.mean, b.mean],
            "std": [a.std, b.std],
        }
        if a.boundaries is None:
            entry["mean_shift_in_std"] = round((b.mean - a.mean) / a.std, 6) if a.std and math.isfinite(a.std) else None
        else:
            entry["quantile_edges_max_abs_change"] = _edge_change(a.boundaries, b.boundaries or [])
        numeric[name] = entry
    return {"vocabularies": vocab, "oov_rate_new_validation": oov, "numeric_earlier_vs_new": numeric}


def _edge_change(a: list[float], b: list[float]) -> float | None:
    if len(a) != len(b):
        return None  # tied quantiles merged differently: edges are not comparable one to one
    return round(float(np.abs(np.asarray(a) - np.asarray(b)).max()), 6) if a else 0.0
