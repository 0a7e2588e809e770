"""Tasks → groups: STG-MTL clustering of data-map task representations, and partitions from a
pairwise affinity matrix (lookahead affinity, TAG).

STG-MTL (Sherif et al., "STG-MTL: Scalable Task Grouping for Multi-Task Learning Using Data
Maps", 2023) and its reference code: each task is the vector of its data map over the sampled
rows (here ``[confidence | variability]``, (2N,)); the task vectors are clustered with k-means and
the fuzzy memberships follow from the k-means centroids with the fuzzy c-means equation
``u_tc = 1 / Σ_j (d_tc / d_tj)^(2/(m−1))`` (fuzziness ``m`` = 1.07 by default, as in the reference).
Choices made here: rows undefined for any task are dropped so every task is represented on the
same rows; tasks without a true-class probability (regression) are not clustered; when the number
of groups is not given it is the k in [2, T−1] with the best silhouette score; a task's group is
its largest membership. The printed affinity between two tasks is the Pearson correlation of
their data-map vectors.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from recsys_mtl.errors import DataError
from recsys_mtl.grouping.datamaps import confidence_variability


#: the affinity partition is searched exhaustively, so only for this many tasks or fewer
MAX_EXHAUSTIVE_TASKS = 12


@dataclass
class Grouping:
    tasks: list[str]
    #: (T, T) affinity between tasks (data maps: correlation; lookahead: symmetrised Z)
    affinity: np.ndarray
    #: group index per task
    labels: np.ndarray
    #: (T, K) fuzzy membership (data maps) or one-hot (affinity partition)
    membership: np.ndarray
    method: str

    def groups(self) -> dict[str, list[str]]:
        """``{g0: [tasks], g1: [...]}`` in task order, groups numbered by first appearance."""
        order: dict[int, str] = {}
        for lab in self.labels:
            order.setdefault(int(lab), f"g{len(order)}")
        out: dict[str, list[str]] = {name: [] for name in order.values()}
        for t, lab in zip(self.tasks, self.labels):
            out[order[int(lab)]].append(t)
        return out


def task_vectors(probs: np.ndarray, tasks: list[str]) -> tuple[np.ndarray, list[str]]:
    """(E, T, N) data-map probabilities → (T', 2N') task vectors of the tasks that have a map."""
    conf, var = confidence_variability(probs)
    has = ~np.isnan(conf).all(axis=1)
    conf, var = conf[has], var[has]
    rows = ~np.isnan(conf).any(axis=0)
    if rows.sum() == 0:
        raise DataError("data maps: no row is labelled for every classification task")
    return np.concatenate([conf[:, rows], var[:, rows]], axis=1), [t for t, h in zip(tasks, has) if h]


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 10, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding, best of ``n_init``: (n, d) → labels (n,), centres (k, d)."""
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(n_init):
        centres = [x[rng.integers(len(x))]]
        for _ in range(1, k):
            d2 = np.min(((x[:, None] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
            centres.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
        c = np.array(centres)
        for _ in range(iters):
            labels = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
            new = np.array([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
            if np.allclose(new, c):
                break
            c = new
        inertia = float(((x - c[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, c)
    assert best is not None
    return best[1], best[2]


def fuzzy_membership(x: np.ndarray, centres: np.ndarray, m: float = 1.07) -> np.ndarray:
    """(n, d) points, (k, d) centres → (n, k) fuzzy c-means memberships (rows sum to 1)."""
    d = np.sqrt(((x[:, None] - centres[None]) ** 2).sum(-1))  # (n, k)
    out = np.zeros_like(d)
    for i, row in enumerate(d):
        if (row == 0).any():  # a point on a centre belongs to it
            out[i, row == 0] = 1.0 / (row == 0).sum()
            continue
        # in log space: the exponent 2/(m-1) is ~29 at m = 1.07
        logs = -(2.0 / (m - 1.0)) * np.log(row)
        out[i] = np.exp(logs - logs.max()) / np.exp(logs - logs.max()).sum()
    return out


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (Euclidean); 0 for a single cluster."""
    if len(set(labels.tolist())) < 2:
        return 0.0
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    scores = []
    for i, lab in enumerate(labels):
        same = (labels == lab) & (np.arange(len(x)) != i)
        if not same.any():
            scores.append(0.0)
            continue
        a = d[i, same].mean()
        b = min(d[i, labels == o].mean() for o in set(labels.tolist()) if o != lab)
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(scores))


def group_by_data_maps(probs: np.ndarray, tasks: list[str], k: int | None = None, m: float = 1.07, seed: int = 0) -> Grouping:
    """STG-MTL grouping of the tasks that have data maps (see the module docstring)."""
    vecs, names = task_vectors(probs, tasks)
    if len(names) < 2:
        raise DataError(f"data maps: need at least 2 classification tasks to group, got {names}")
    candidates = [k] if k is not None else list(range(2, len(names))) or [1]
    if any(c < 1 or c > len(names) for c in candidates):
        raise DataError(f"--groups must be in [1, {len(names)}], got {k}")
    fits = [(c, *kmeans(vecs, c, seed)) for c in candidates]
    c, labels, centres = max(fits, key=lambda f: silhouette(vecs, f[1]))
    membership = fuzzy_membership(vecs, centres, m)
    return Grouping(names, np.corrcoef(vecs), membership.argmax(1), membership, "data maps (STG-MTL)")


def group_by_affinity(affinity: np.ndarray, tasks: list[str], k: int = 2) -> Grouping:
    """The partition into ``k`` non-empty groups maximising the mean within-group affinity of the
    symmetrised matrix (exhaustive search, so for a handful of tasks).

    This is *not* TAG's selection (Fifty et al. 2021, Sec. 3.2): TAG chooses possibly overlapping
    groups (a task may be served by several) and scores each task by the affinity onto it from its
    best group, keeping the directed matrix; here the groups are disjoint and the matrix symmetrised,
    which HoME's ``groups`` (one group per task) needs. Only the affinity measure is TAG's."""
    T = len(tasks)
    if not 1 <= k <= T or T > MAX_EXHAUSTIVE_TASKS:
        raise DataError(f"affinity grouping: needs 1 <= groups <= tasks <= 12, got {k} groups, {T} tasks")
    s = (affinity + affinity.T) / 2.0
    best: tuple[float, tuple[int, ...]] | None = None
    for rest in itertools.product(range(k), repeat=T - 1):
        labels = (0, *rest)
        if len(set(labels)) != k or any(labels[i] > max(labels[:i]) + 1 for i in range(1, T)):
            continue  # empty group, or a relabelling of a partition already seen
        lab = np.array(labels)
        pairs = [s[i, j] for i in range(T) for j in range(T) if i != j and lab[i] == lab[j]]
        score = float(np.mean(pairs)) if pairs else 0.0
        if best is None or score > best[0]:
            best = (score, labels)
    assert best is not None
    labels = np.array(best[1])
    return Grouping(list(tasks), s, labels, np.eye(k)[labels], "lookahead affinity (TAG), disjoint partition")
