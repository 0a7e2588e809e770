"""The ``cooccurrence`` kind against hand-computed values on a toy table, and its errors.

Toy train histories (window max_len 3): [a, b], [a, b, c, d], [c, d], [b, a, a]. Item counts in the windows
(row 2's window is [a, b, c]): a 4, b 3, c 2, d 1; with top_items 3 the kept items are a, b, c. Co-occurrence
C[x, y] = Σ_rows m_x m_y over the windows: C[a, b] = 1 + 1 + 2·1 = 4, C[a, c] = 1, C[b, c] = 1;
rows a = (0, 4, 1), b = (4, 0, 1), c = (1, 1, 0).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.errors import DataError, SpecError
from recsys_mtl.features.kinds.cooccurrence import CooccurrenceFeature, raw_frame, similarity
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.loading import validate

FEATURE = {"kind": "cooccurrence", "name": "co", "candidate": "item", "history": "hist", "max_len": 3, "top_items": 3}


def _spec(**change: object) -> FeatureSpec:
    return FeatureSpec.model_validate({"name": "toy", "features": [{**FEATURE, **change}], "tasks": [{"name": "y", "label": "y"}]})


def _train() -> pl.DataFrame:
    return pl.DataFrame({"item": ["a", "b", "c", "d"], "hist": [["a", "b"], ["a", "b", "c", "d"], ["c", "d"], ["b", "a", "a"]],
                         "y": [0, 1, 0, 1]})


def test_counts_and_similarity_equal_the_hand_computed_ones() -> None:
    pre = Preprocessor.fit(_spec(), _train())
    p = pre.pairs["co"]
    assert p.keys == ["a", "b", "c"]
    assert list(zip(p.first, p.second, p.counts)) == [(0, 1, 4), (0, 2, 1), (1, 2, 1)]
    sim = similarity(p)
    assert sim.shape == (4, 4) and not sim[3].any() and not sim[:, 3].any()
    assert sim[0, 1] == pytest.approx(1 / 17, abs=1e-7)  # (0·4 + 4·0 + 1·1) / (√17 √17)
    assert sim[0, 2] == pytest.approx(4 / math.sqrt(17 * 2), abs=1e-7)  # (0·1 + 4·1 + 1·0) / (√17 √2)
    assert sim[0, 0] == pytest.approx(1.0, abs=1e-7)


def test_outputs_per_row_equal_the_hand_computed_ones() -> None:
    pre = Preprocessor.fit(_spec(), _train())
    rows = pl.DataFrame({"item": ["a", "a", "d", None, "a"], "hist": [["b", None, "c"], [], ["a"], ["a"], ["z", "a", "b", "c"]],
                         "y": [0, 0, 0, 0, 0]})
    got = raw_frame(pre.spec.features[0], rows.lazy(), pre.pairs["co"]).collect()  # type: ignore[arg-type]
    ab, ac = 1 / 17, 4 / math.sqrt(34)
    # row 0: b at p=0, missing at p=1, c at p=2; row 1 empty; row 2 unknown candidate; row 3 missing
    # candidate; row 4: window [z, a, b] (c is past max_len), z unknown
    assert got["mean"].to_list() == pytest.approx([(ab + ac) / 2, 0, 0, 0, (1 + ab) / 3], abs=1e-6)
    assert got["max"].to_list() == pytest.approx([ac, 0, 0, 0, 1.0], abs=1e-6)
    assert got["weighted"].to_list() == pytest.approx(
        [(ab + ac / 3) / (1 + 1 / 3), 0, 0, 0, (1 / 2 + ab / 3) / (1 + 1 / 2 + 1 / 3)], abs=1e-6)
    # the transform standardises exactly those values with the fitted statistics
    encoded = pre.transform(rows).numeric.numpy()
    fit = pre.numeric["co.mean"]
    assert encoded[:, 0] == pytest.approx((got["mean"].to_numpy() - fit.mean) / fit.std, abs=1e-5)


def test_misconfiguration_names_the_field_and_the_feature(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"features\[0\].*top_items"):
        validate(FeatureSpec, {"name": "s", "features": [{**FEATURE, "top_items": 10**6}], "tasks": [{"name": "y", "label": "y"}]},
                 "spec.yaml")
    with pytest.raises(SpecError, match="same column"):
        validate(FeatureSpec, {"name": "s", "features": [{**FEATURE, "history": "item"}], "tasks": [{"name": "y", "label": "y"}]},
                 "spec.yaml")
    empty = _train().with_columns(pl.Series("hist", [[], None, [None], []], dtype=pl.List(pl.String)))
    with pytest.raises(DataError, match="cooccurrence feature 'co'.*no items"):
        Preprocessor.fit(_spec(), empty)
    pre = Preprocessor.fit(_spec(), _train())
    state = pre.state()
    state["pairs"]["co"]["second"][0] = 7  # an index past the 3 keys
    path = tmp_path / "preprocessing.json"
    path.write_text(json.dumps(state))
    with pytest.raises(DataError, match=r"pairs\.co"):
        Preprocessor.load(path, pre.spec)
    # a state without its pair table fails naming the feature
    del state["pairs"]
    path.write_text(json.dumps(state))
    with pytest.raises(DataError, match="cooccurrence feature 'co'"):
        Preprocessor.load(path, pre.spec)


def test_saved_and_loaded_state_transforms_alike(tmp_path: Path) -> None:
    pre = Preprocessor.fit(_spec(), _train())
    pre.save(tmp_path / "preprocessing.json")
    loaded = Preprocessor.load(tmp_path / "preprocessing.json", pre.spec)
    assert np.array_equal(loaded.transform(_train()).numeric.numpy(), pre.transform(_train()).numeric.numpy())


def test_the_reference_example_is_a_valid_feature() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text()
    section = text[text.index("### `cooccurrence`"):]
    block = re.search(r"```yaml\n(.*?)```", section, flags=re.S)
    assert block is not None
    (feature,) = yaml.safe_load(block.group(1))
    assert CooccurrenceFeature.model_validate(feature).top_items == 2000


def test_kernel_shares_equal_the_hand_computed_ones() -> None:
    """K-NRM kernel pooling: Σ_p exp(-(s_p - mu)² / (2 sigma²)) over the non-missing entries / their number."""
    kernels = {"mu": [0.0, 0.5, 1.0], "sigma": 0.2}
    pre = Preprocessor.fit(_spec(outputs=["mean", "kernels"], kernels=kernels), _train())
    f = pre.spec.features[0]
    assert [c for c in pre.numeric] == ["co.mean", "co.kernel0", "co.kernel1", "co.kernel2"]
    rows = pl.DataFrame({"item": ["a", "a", "d", "a"], "hist": [["b", None, "c"], [], ["a", "b"], ["z", "a", "b", "c"]],
                         "y": [0, 0, 0, 0]})
    got = raw_frame(f, rows.lazy(), pre.pairs["co"]).collect()  # type: ignore[arg-type]
    assert got.columns == ["mean", "kernel0", "kernel1", "kernel2"]
    ab, ac = 1 / 17, 4 / math.sqrt(34)

    def k(s: float, mu: float) -> float:
        return math.exp(-((s - mu) ** 2) / (2 * 0.2**2))

    for col, mu in zip(["kernel0", "kernel1", "kernel2"], [0.0, 0.5, 1.0]):
        # row 0: b and c (the missing entry counts nowhere); row 1 empty; row 2 unknown candidate d:
        # both entries at similarity 0; row 4: window [z, a, b], z unknown (similarity 0)
        want = [(k(ab, mu) + k(ac, mu)) / 2, 0.0, k(0.0, mu), (k(0.0, mu) + k(1.0, mu) + k(ab, mu)) / 3]
        assert got[col].to_list() == pytest.approx(want, abs=1e-6), col  # the table is float32
    # the share near 1 counts the candidate's own occurrence in the window: 1 of 3 entries
    assert got["kernel2"][3] == pytest.approx(1 / 3, abs=1e-3)


def test_kernels_are_checked_where_they_are_declared() -> None:
    with pytest.raises(SpecError, match=r"features\[0\].*kernels.*outputs"):
        validate(FeatureSpec, {"name": "s", "features": [{**FEATURE, "kernels": {"mu": [0.5]}}],
                               "tasks": [{"name": "y", "label": "y"}]}, "spec.yaml")
    for bad, says in (({"mu": [0.5, 0.5]}, "twice"), ({"mu": [1.5]}, r"\[-1, 1\]"), ({"mu": [0.5], "sigma": 0}, "sigma"),
                      ({"mu": []}, "mu")):
        with pytest.raises(SpecError, match=says):
            validate(FeatureSpec, {"name": "s", "features": [{**FEATURE, "outputs": ["kernels"], "kernels": bad}],
                                   "tasks": [{"name": "y", "label": "y"}]}, "spec.yaml")
    # the default kernels need no section
    assert CooccurrenceFeature.model_validate({**FEATURE, "outputs": ["kernels"]}).names == [
        f"kernel{k}" for k in range(len(CooccurrenceFeature.model_validate(FEATURE).kernels.mu))]
