"""Which finished trial the study refits: one that beats the enqueued default on validation, else the default.

The rule sees validation objective values only (trials never see test). With the enqueued default
(trial 0) finished, a candidate must be better than it on **every** objective by more than
``tune.refit_min_gain`` (a multi-objective study cannot hand back a trial that trades one task for
another); among candidates the pick maximises the smallest gain over the default (ties: the larger
total gain). When no trial qualifies, the default itself is refit. Without a default trial the
pick is the best trial (one objective) or the ``refit_pareto_index``-th Pareto trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from optuna.trial import FrozenTrial


@dataclass(frozen=True)
class Pick:
    """The trial to refit and, in words, why (the summary prints it)."""

    trial: FrozenTrial
    reason: str


def gains(trial: FrozenTrial, default: FrozenTrial, directions: Sequence[str]) -> list[float]:
    """Per-objective validation gain of ``trial`` over ``default``, signed so that positive is better."""
    return [(v - d) if direction == "maximize" else (d - v) for v, d, direction in zip(trial.values, default.values, directions)]


def pick_over_default(front: Sequence[FrozenTrial], default: FrozenTrial, directions: Sequence[str],
                      min_gain: float = 0.0) -> Pick:
    """The front trial that beats ``default`` by more than ``min_gain`` on every objective with the largest
    smallest gain; ``default`` when none does. ``front``: the study's best trial(s) on validation."""
    scored = [(g, t) for t in front if t.number != default.number
              for g in [gains(t, default, directions)] if min(g) > min_gain]
    if not scored:
        return Pick(default, f"default: no trial beats trial {default.number} by more than {min_gain:g} "
                             f"on every validation objective")
    g, best = max(scored, key=lambda s: (min(s[0]), sum(s[0])))
    shown = ", ".join(f"{x:+.4f}" for x in g)
    return Pick(best, f"tuned: beats default trial {default.number} on every validation objective (gains {shown}; "
                      f"the largest smallest gain of {len(scored)} such trial(s) on the front)")
