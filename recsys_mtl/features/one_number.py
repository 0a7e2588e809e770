"""What the kinds whose feature becomes ONE numeric column share (``numeric``, ``expression``).

Such a feature is fitted by :func:`~recsys_mtl.features.numeric_fit.fit_numeric_columns` into one
:class:`~recsys_mtl.features.fitted.FittedNumeric`; from it follow its statistics-free entry, the
check of a loaded state, its place in the layout (a standardized number in the numeric matrix, or a
quantile-bucket index with its own table in the categorical matrix, plus its missing indicator) and
its encoded columns, in numpy and in the ONNX graph. A kind supplies only what differs: the raw
value (a column, or an expression over columns) and the ``source`` its fitted entry records.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Columns, FeatureKind, Fitted
from recsys_mtl.features.fitted import FIRST, QUANTILE_STEPS, FittedNumeric
from recsys_mtl.features.layout import Layout

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder

S = TypeVar("S")


class OneNumberKind(FeatureKind[S]):  # type: ignore[type-var]
    """A kind whose feature ``f`` has ``name``, ``missing``, ``quantile_buckets`` and ``embedding_dim``."""

    #: how errors about a loaded state name the feature, e.g. "feature" or "expression feature"
    what: ClassVar[str] = "feature"

    def source(self, f: Any) -> str:
        """What the fitted entry records as its ``source`` (checked when a state is loaded)."""
        return f.source

    def shape_only(self, f: Any) -> dict[str, FittedNumeric]:
        return {f.name: FittedNumeric(
            f.name, self.source(f), impute_value=0.0, indicator=f.missing.indicator, clip_min=None, clip_max=None,
            log1p=False, mean=0.0, std=1.0,
            boundaries=[float(i) for i in range(f.quantile_buckets - 1)] if f.quantile_buckets else None,
            # any increasing bins (as a fit stores for non-bucketed columns): piecewise-linear
            # numeric embeddings are built from them
            quantiles=None if f.quantile_buckets else [i / QUANTILE_STEPS for i in range(QUANTILE_STEPS + 1)],
        )}

    def check_state(self, f: Any, fitted: Fitted, path: Path) -> None:
        n = fitted.numeric.get(f.name)
        if n is None:
            raise DataError(f"{path}: numeric: no entry for {self.what} {f.name!r}")
        if n.source != self.source(f) or not n.std > 0:
            raise DataError(f"{path}: numeric.{f.name}: source must be {self.source(f)!r} and std > 0")
        if n.boundaries is not None and n.boundaries != sorted(n.boundaries):
            raise DataError(f"{path}: numeric.{f.name}.boundaries: not sorted")

    def layout(self, f: Any, fitted: Fitted, lay: Layout) -> None:
        fit = fitted.numeric[f.name]
        if fit.boundaries is not None:
            lay.categorical.append((f.name, f.name))
            lay.ordered.append(f.name)
            lay.tables[f.name] = (len(fit.boundaries) + 1 + FIRST, f.embedding_dim)
        else:
            lay.numeric.append(f.name)
        if fit.indicator:
            lay.indicators.append(f.name)

    @staticmethod
    def encoded(fit: FittedNumeric, value: Any, indicator: Any) -> Columns[Any]:
        """The transformed value (numpy array or graph tensor) and its indicator in their channels."""
        out: Columns[Any] = Columns(categorical=[value]) if fit.boundaries is not None else Columns(numeric=[value])
        if fit.indicator:
            out.indicators.append(indicator.astype(np.float32) if isinstance(indicator, np.ndarray) else indicator)
        return out

    def graph_from(self, f: Any, b: "GraphBuilder", fitted: Fitted, raw: str) -> Columns[str]:
        """The fitted transform of the double (B,) graph tensor ``raw`` in the ONNX graph."""
        from recsys_mtl.features.graph import numeric

        fit = fitted.numeric[f.name]
        value, indicator = numeric(b, raw, fit, f.name)
        return self.encoded(fit, value, indicator)
