"""Synthetic behaviour-sequence data where the targets depend on candidate × history.

Built to tell target attention from mean pooling: a user's history mixes items from a few
favourite categories with random ones; each row shows one candidate item, and

- ``click``: logit ``4·m − 1.5 + b_item``, with ``m`` the share of history items in the
  candidate's category (the candidate's relevance to this user) and ``b_item`` a small item bias;
- ``like``: logit ``2.5·r + 2·m − 2.5``, with ``r`` = 1 when the candidate itself is in the
  history (repeat consumption).

Item categories are never given as features: a model must learn them into the item embeddings
from co-occurrence, and match candidate against history. ``user_id`` identifies the user (for
grouped AUC) and is not meant to be a feature (its embedding could memorise the favourites).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class SequenceDataConfig:
    rows: int = 40_000
    users: int = 1_000
    items: int = 100
    categories: int = 8
    min_history: int = 3
    max_history: int = 30
    #: favourite categories per user, and the share of history items drawn from them
    interests: int = 2
    focus: float = 0.8
    #: share of candidates drawn from the user's favourite categories
    relevant_rate: float = 0.4
    seed: int = 0


def generate_sequences(cfg: SequenceDataConfig = SequenceDataConfig()) -> pl.DataFrame:
    """Columns: ``user_id``, ``item_id`` (str), ``history`` (list[str]), ``hour`` (numeric
    noise), labels ``click``, ``like`` (0/1) and the true probabilities ``p_click``, ``p_like``
    they were drawn from (never features: they give the ceiling a model can reach)."""
    rng = np.random.default_rng(cfg.seed)
    item_cat = rng.integers(cfg.categories, size=cfg.items)
    by_cat = [np.flatnonzero(item_cat == c) for c in range(cfg.categories)]
    by_cat = [c if c.size else rng.integers(cfg.items, size=1) for c in by_cat]
    item_bias = rng.normal(0, 0.3, cfg.items)

    favourites = np.stack([rng.choice(cfg.categories, cfg.interests, replace=False) for _ in range(cfg.users)])
    histories = []
    for u in range(cfg.users):
        n = int(rng.integers(cfg.min_history, cfg.max_history + 1))
        focused = rng.random(n) < cfg.focus
        cats = np.where(focused, rng.choice(favourites[u], n), rng.integers(cfg.categories, size=n))
        histories.append(np.array([rng.choice(by_cat[c]) for c in cats]))

    user = rng.integers(cfg.users, size=cfg.rows)
    relevant = rng.random(cfg.rows) < cfg.relevant_rate
    cand_cat = np.where(relevant, favourites[user, rng.integers(cfg.interests, size=cfg.rows)], rng.integers(cfg.categories, size=cfg.rows))
    cand = np.array([rng.choice(by_cat[c]) for c in cand_cat])
    match = np.array([np.mean(item_cat[histories[u]] == item_cat[i]) for u, i in zip(user, cand)])
    repeat = np.array([i in histories[u] for u, i in zip(user, cand)], dtype=np.float64)

    p_click = 1 / (1 + np.exp(-(4 * match - 1.5 + item_bias[cand])))
    p_like = 1 / (1 + np.exp(-(2.5 * repeat + 2 * match - 2.5)))
    click = (rng.random(cfg.rows) < p_click).astype(np.int64)
    like = (rng.random(cfg.rows) < p_like).astype(np.int64)
    return pl.DataFrame({
        "user_id": [f"u{u}" for u in user],
        "item_id": [f"i{i}" for i in cand],
        "history": [[f"i{i}" for i in histories[u]] for u in user],
        "hour": rng.integers(0, 24, cfg.rows).astype(np.float64),
        "click": click,
        "like": like,
        "p_click": p_click,
        "p_like": p_like,
    })
