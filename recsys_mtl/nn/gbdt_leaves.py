"""GBDT leaf indices as extra categorical inputs (He et al., "Practical Lessons from Predicting
Clicks on Ads at Facebook", ADKDD 2014: boosted trees as a feature transform for the next model).

Before training, LightGBM fits ``n_trees`` trees per task on the encoded train split (categorical
indices taken as ordinal numbers, numeric columns as the model sees them). The trees are then
stored as tensors and evaluated inside the model: each row walks every tree (``max_depth``
comparisons, vectorised over trees), the leaf it reaches indexes a per-tree embedding, and the
(B, trees · d) leaf embeddings join the flat input. Because the walk is ordinary tensor code on
float32 thresholds, training, checkpoints and the exported ONNX graph use the very same trees
(no separate LightGBM runtime at serving time, parity by construction). Deviation from the
paper: the leaves feed embeddings of a multitask network instead of a one-hot logistic
regression, and LightGBM's native categorical splits are not used (a threshold on an index
is what a tensor walk can express).

``margin: true`` also adds each binary task's boosted score (the sum of its trees' leaf values,
LightGBM's raw score, initial score included) to that task's logit, so the network starts from
the trees' predictions and learns a residual on them: stacking as in boosting from an initial
score (LightGBM's ``init_score``), here with the trees inside the model and its ONNX graph.

``early_stopping_rounds`` makes ``n_trees`` a cap, as the practitioner's LightGBM per task
(:mod:`recsys_mtl.baselines.practitioner`) does: each task boosts on the train split with early
stopping on the validation split's task metric (AUC for binary tasks, l2 for regression, nothing
else), and keeps the trees up to its best validation iteration; the slots after them stay
constant trees (one leaf, value 0), so the model's shapes never depend on the data. The kept
count per task is stored with the trees (``fitted_trees``). The inputs are those of the
practitioner's ``rank_all`` candidate: every categorical as its vocabulary index, which is ordered
by training frequency (LightGBM's native subset splits have no threshold form for the walk).

``pooling: none`` (with ``margin: true`` only) keeps the trees' score in the logit and drops the
leaf embeddings: the network sees the plain inputs and learns the residual over the trees at the
plain step's cost (no leaf table, no (B, T · d) inputs to the experts' first layer).

The trees are frozen while the network trains, so a training row's leaves never change: loaders
of in-memory splits carry them as a precomputed (B, T) batch column (:data:`LEAVES_KEY`, computed
once per split by :mod:`recsys_mtl.train.precomputed`) and the training step skips the walk; with
``margin: true`` they also carry the (B, tasks) tree scores (:data:`MARGINS_KEY`), so the step does
not gather and sum T leaf values either (``pooling: none`` carries the scores alone). A batch
without those columns (the exported graph, serving, ad-hoc calls) walks the trees on raw columns.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from recsys_mtl.errors import SpecError
from recsys_mtl.nn.pooled_gather import pooled_gather
from recsys_mtl.strict import ParamsModel

#: batch key of precomputed (B, T) leaf indices (int16/int64) of every tree, in :meth:`GBDTLeaves.leaves` order
LEAVES_KEY = "gbdt.leaves"
#: batch key of precomputed (B, tasks) float32 tree scores (:meth:`GBDTLeaves.margins`), with ``margin: true``
MARGINS_KEY = "gbdt.margins"


class GBDTLeavesConfig(ParamsModel):
    """An encoder option: ``gbdt_leaves: {n_trees: 50, num_leaves: 31, d_embedding: 4}``."""

    n_trees: int = Field(50, ge=1)
    """trees per task (binary and regression tasks; multiclass tasks get none)"""
    num_leaves: int = Field(31, ge=2)
    """leaves per tree"""
    max_depth: int = Field(8, ge=1)
    """tree depth at most"""
    learning_rate: float = Field(0.1, gt=0)
    """shrinkage per boosting round"""
    min_data_in_leaf: int = Field(100, ge=1)
    """minimum train rows in a leaf"""
    feature_fraction: float = Field(0.8, gt=0, le=1)
    """share of the inputs each tree samples"""
    d_embedding: int = Field(4, ge=1)
    """width of each tree's leaf embedding"""
    pooling: Literal["concat", "sum", "none"] = "concat"
    """`concat`: one d-vector per tree (trees × d inputs); `sum`: each task's trees' leaf vectors summed (tasks × d
    inputs, a cheaper step; the paper's one-hot leaves into a linear model is this sum with d = 1); `none`: no leaf
    inputs at all, only the trees' score in the logit (needs `margin: true`; the network learns the residual at
    the plain step's cost; `d_embedding` unused)"""
    pool_trees: int | None = Field(None, ge=1)
    """with `pooling: sum`: consecutive trees of a task summed into one d-wide input (must divide `n_trees`;
    trees / pool_trees × d inputs); None: all of a task's trees (tasks × d inputs)"""
    seed: int = 0
    """LightGBM seed"""
    margin: bool = False
    """add each binary task's tree score (log-odds) to its logit: the network learns the residual"""
    early_stopping_rounds: int | None = Field(None, ge=1)
    """boost each task up to ``n_trees`` rounds with early stopping on the validation split (its AUC /
    l2) after this many rounds without improvement; None: exactly ``n_trees`` trees"""
    bagging_fraction: float = Field(1.0, gt=0, le=1)
    """LightGBM's row subsample per tree (bagging_fraction, drawn every iteration); 1 = off"""
    lambda_l2: float = Field(0.0, ge=0)
    """LightGBM's L2 on leaf values"""

    @model_validator(mode="after")
    def _pooling_consistent(self) -> "GBDTLeavesConfig":
        if self.pooling == "none" and not self.margin:
            raise ValueError("gbdt_leaves.pooling: none (no leaf inputs) needs gbdt_leaves.margin: true, "
                             "else the trees would add nothing to the model")
        if self.pool_trees is not None:
            if self.pooling != "sum":
                raise ValueError("gbdt_leaves.pool_trees needs pooling: sum")
            if self.n_trees % self.pool_trees:
                raise ValueError(f"gbdt_leaves.pool_trees={self.pool_trees} must divide n_trees={self.n_trees}")
        return self

    def leaf_inputs(self) -> bool:
        """Whether the leaves are network inputs (embedded); False with ``pooling: none`` (margin only)."""
        return self.pooling != "none"

    def trees_per_field(self) -> int:
        """How many trees' leaf vectors one d-wide input field sums: 1 (concat), ``pool_trees``, or ``n_trees`` (sum,
        none)."""
        if self.pooling == "concat":
            return 1
        return self.pool_trees or self.n_trees


class GBDTLeaves(nn.Module):
    """(B, F) float inputs → (B, T · d) embeddings of the leaf each tree sends the row to
    (``pooling: sum``: (B, tasks · d), each task's trees' leaf embeddings summed; with ``pool_trees``
    p: (B, T / p · d), each run of p consecutive trees of a task summed).

    Every tree is stored in one node space of ``I = num_leaves - 1`` internal slots followed by
    ``num_leaves`` leaf slots; leaves point to themselves, so ``max_depth`` steps of
    ``node ← x[feature[node]] <= threshold[node] ? left[node] : right[node]`` end on a leaf.
    """

    def __init__(self, n_inputs: int, n_tasks: int, cfg: GBDTLeavesConfig):
        super().__init__()
        self.cfg = cfg
        self.n_inputs = n_inputs
        self.n_trees = cfg.n_trees * n_tasks
        self.inner = cfg.num_leaves - 1
        nodes = self.inner + cfg.num_leaves
        t = self.n_trees
        # an unfitted tree sends every row to its leaf 0 (threshold +inf: always left)
        left = torch.full((t, nodes), self.inner, dtype=torch.long)
        left[:, self.inner:] = torch.arange(self.inner, nodes)
        self.register_buffer("feature", torch.zeros(t, nodes, dtype=torch.long))
        self.register_buffer("threshold", torch.full((t, nodes), float("inf")))
        self.register_buffer("left", left)
        self.register_buffer("right", left.clone())
        self.register_buffer("tree_offset", torch.arange(t) * nodes, persistent=False)
        self.register_buffer("leaf_offset", torch.arange(t) * cfg.num_leaves, persistent=False)
        if cfg.margin:  # registered only when used: checkpoints without it keep loading
            self.register_buffer("leaf_value", torch.zeros(t, cfg.num_leaves))
        if cfg.early_stopping_rounds is not None:  # (tasks,) trees kept per task, chosen on validation
            self.register_buffer("fitted_trees", torch.zeros(n_tasks, dtype=torch.long))
        if cfg.leaf_inputs():  # pooling none: no table at all (its state dict has no ``embedding.weight``)
            self.embedding = nn.Embedding(t * cfg.num_leaves, cfg.d_embedding)
            nn.init.normal_(self.embedding.weight, std=0.05)
        self.n_tasks = n_tasks
        #: d_embedding-wide input fields: one per tree (concat), per ``pool_trees`` trees, per task (sum), none (none)
        self.n_fields = t // cfg.trees_per_field() if cfg.leaf_inputs() else 0
        self.output_dim = self.n_fields * cfg.d_embedding

    def leaves(self, x: Tensor) -> Tensor:
        """(B, F) inputs → (B, T) leaf index of each tree (0 … num_leaves - 1)."""
        b = x.shape[0]
        node = torch.zeros(b, self.n_trees, dtype=torch.long, device=x.device)
        feature, threshold = self.feature.flatten(), self.threshold.flatten()
        left, right = self.left.flatten(), self.right.flatten()
        for _ in range(self.cfg.max_depth):
            flat = node + self.tree_offset  # (B, T) into the flattened (T · nodes) arrays
            value = x.gather(1, feature[flat])
            node = torch.where(value <= threshold[flat], left[flat], right[flat])
        return node - self.inner

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(self.leaves(x))

    def leaf_dtype(self) -> torch.dtype:
        """The narrowest integer dtype that holds a leaf index (what precomputed columns store)."""
        return torch.int16 if self.cfg.num_leaves <= torch.iinfo(torch.int16).max else torch.int64

    def same_trees(self, other: "GBDTLeaves") -> bool:
        """Whether ``other`` walks rows to the same leaves (same tree buffers) and, with ``margin``,
        scores them the same (same leaf values)."""
        names = ("feature", "threshold", "left", "right") + (("leaf_value",) if self.cfg.margin and other.cfg.margin else ())
        return all(torch.equal(getattr(self, n), getattr(other, n)) for n in names)

    def embed(self, leaves: Tensor) -> Tensor:
        """(B, T) leaf indices (:meth:`leaves`) → (B, T · d) leaf embeddings, or with ``pooling:
        sum`` (B, n_fields · d): the sum over each task's ``n_trees`` trees, or over each run of
        ``pool_trees`` consecutive trees (trees are stored task by task).

        ``index_select`` rather than ``nn.Embedding``'s lookup: the same rows, but its backward is
        one ``index_add`` while the embedding backward sorts the B · T indices first (census
        recipe, 200 trees: ~14 → ~3 ms per 1,024-row step on one CPU thread). Summed leaves in
        training go through :func:`~recsys_mtl.nn.pooled_gather.pooled_gather` (the same sums, a
        backward without the expanded copy); in eval (validation, export) the gather and sum stay
        plain ops, the graph the exporter has always traced."""
        if not self.cfg.leaf_inputs():
            raise RuntimeError("gbdt_leaves.pooling: none has no leaf embeddings to look up")
        b = leaves.shape[0]
        index = leaves + self.leaf_offset  # (B, T) rows of the stacked tables
        weight = self.embedding.weight
        if self.cfg.pooling == "sum":
            p = self.cfg.trees_per_field()
            if self.training:
                return pooled_gather(weight, index.view(-1, p)).view(b, -1)
            return weight.index_select(0, index.flatten()).view(b, self.n_fields, p, -1).sum(2).view(b, -1)
        return weight.index_select(0, index.flatten()).view(b, -1)  # (B, T · d)

    def margins(self, leaves: Tensor) -> Tensor:
        """(B, T) leaf indices (:meth:`leaves`) → (B, tasks) boosted raw score of each task's trees
        (needs ``margin``)."""
        values = self.leaf_value.flatten()[leaves + self.leaf_offset]  # (B, T)
        return values.view(leaves.shape[0], -1, self.cfg.n_trees).sum(-1)

    # ------------------------------------------------------------------ fitting
    def fit(self, x: np.ndarray, labels: np.ndarray, weights: np.ndarray, objectives: Sequence[str],
            valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> list[Any]:
        """LightGBM on (N, F) float32 ``x``; ``labels`` / ``weights`` (N, T_tasks); one objective per task.
        ``valid``: the validation split's (x, labels, weights), needed with ``early_stopping_rounds``.
        Returns the boosters (one per task), whose first ``best_iteration`` trees (all ``n_trees``
        without early stopping) are now this module's."""
        try:
            import lightgbm as lgb
        except ImportError:
            raise SpecError("encoder.gbdt_leaves needs lightgbm (pip install 'recsys-mtl[lightgbm]')") from None
        cfg = self.cfg
        stop = cfg.early_stopping_rounds
        if stop is not None and valid is None:
            raise SpecError("encoder.gbdt_leaves.early_stopping_rounds: needs the validation split")
        params = {
            "num_leaves": cfg.num_leaves, "max_depth": cfg.max_depth, "learning_rate": cfg.learning_rate,
            "min_data_in_leaf": cfg.min_data_in_leaf, "feature_fraction": cfg.feature_fraction, "seed": cfg.seed,
            "bagging_fraction": cfg.bagging_fraction, "bagging_freq": 1 if cfg.bagging_fraction < 1 else 0,
            "lambda_l2": cfg.lambda_l2, "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbose": -1,
        }
        trees: list[dict] = []
        boosters = []
        for k, objective in enumerate(objectives):
            rows = weights[:, k] > 0
            data = lgb.Dataset(x[rows], labels[rows, k], weight=weights[rows, k], free_raw_data=True)
            if stop is None:
                booster = lgb.train({**params, "objective": objective}, data, num_boost_round=cfg.n_trees)
                kept = cfg.n_trees
            else:
                assert valid is not None
                vx, vy, vw = valid
                vrows = vw[:, k] > 0
                dvalid = lgb.Dataset(vx[vrows], vy[vrows, k], weight=vw[vrows, k], reference=data)
                # the task's own metric only, as the practitioner's LightGBM stops
                metric = {"binary": "auc", "regression": "l2"}[objective]
                booster = lgb.train({**params, "objective": objective, "metric": metric}, data, num_boost_round=cfg.n_trees,
                                    valid_sets=[dvalid], valid_names=["valid"],
                                    callbacks=[lgb.early_stopping(stop, first_metric_only=True, verbose=False)])
                kept = int(booster.best_iteration or booster.current_iteration())
                self.fitted_trees[k] = kept
            boosters.append(booster)
            dumped = booster.dump_model(num_iteration=kept)["tree_info"]
            trees += [t["tree_structure"] for t in dumped]
            trees += [{"leaf_index": 0}] * (cfg.n_trees - len(dumped))  # stopped early: constant trees
        with torch.no_grad():
            for i, tree in enumerate(trees):
                self._store(i, tree)
        return boosters

    def _store(self, i: int, tree: dict) -> None:
        def slot(node: dict) -> int:
            return node["split_index"] if "split_index" in node else self.inner + node["leaf_index"]

        stack = [tree]
        if "split_index" not in tree:  # a single leaf: the default root already sends rows to leaf 0
            if self.cfg.margin:
                self.leaf_value[i, 0] = tree.get("leaf_value", 0.0)
            return
        while stack:
            node = stack.pop()
            if "split_index" not in node:
                if self.cfg.margin:
                    self.leaf_value[i, node["leaf_index"]] = node["leaf_value"]
                continue
            if node.get("decision_type", "<=") != "<=":
                raise SpecError(f"gbdt_leaves: unsupported LightGBM split {node.get('decision_type')!r}")
            n = node["split_index"]
            self.feature[i, n] = node["split_feature"]
            self.threshold[i, n] = _float32_below(node["threshold"])
            self.left[i, n] = slot(node["left_child"])
            self.right[i, n] = slot(node["right_child"])
            stack += [node["left_child"], node["right_child"]]


def _float32_below(threshold: float) -> float:
    """The largest float32 ≤ ``threshold``: on float32 inputs ``x <= it`` decides as LightGBM's
    ``x <= threshold`` in double precision (no input lies between the two)."""
    c = np.float32(threshold)
    if float(c) > threshold:
        c = np.nextafter(c, np.float32(-np.inf))
    return float(c)
