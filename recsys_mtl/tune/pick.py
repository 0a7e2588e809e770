"""Which finished trial the study refits: one that beats the enqueued default on validation, else the default.

The rule sees validation objective values only (trials never see test). With the enqueued default
(trial 0) finished, a candidate must be better than it on **every** objective by more than
``tune.refit_min_gain`` (a multi-objective study cannot hand back a trial that trades one task for
another); among candidates the pick maximises the smallest gain over the default (ties: the larger
total gain). When no trial qualifies, the default itself is refit. Without a default trial the
pick is the best trial (one objective) or the ``refit_pareto_index``-th Pareto trial.

Trials may run on a proxy budget (``trial_overrides``, ``train_fraction``) that ranks them unlike
the full budget. With ``tune.refit_default`` both the pick and the default are refit on the full
budget; :func:`confirm` then keeps the pick only if its refit beats the default's refit on every
validation objective by more than ``refit_min_gain``, else the default's refit is the study's
result. With full-budget trials a refit reproduces its trial, so this changes nothing.
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
    return signed_gains(trial.values, default.values, directions)


def signed_gains(values: Sequence[float], reference: Sequence[float], directions: Sequence[str]) -> list[float]:
    """Per-objective gain of ``values`` over ``reference``, positive where better."""
    return [(v - d) if direction == "maximize" else (d - v) for v, d, direction in zip(values, reference, directions)]


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


def confirm(pick: Pick, default: FrozenTrial, tuned_refit: Sequence[float], default_refit: Sequence[float],
            directions: Sequence[str], min_gain: float = 0.0) -> Pick:
    """``pick`` if its refit's validation objective values beat the default's refit's by more than
    ``min_gain`` on every objective, else ``default`` (the refits use the full budget; trials may not)."""
    g = signed_gains(tuned_refit, default_refit, directions)
    shown = ", ".join(f"{x:+.4f}" for x in g)
    if min(g) > min_gain:
        return Pick(pick.trial, f"{pick.reason}; confirmed by the refits' validation (gains {shown})")
    return Pick(default, f"default: trial {pick.trial.number} beat trial {default.number} on the trials' validation, but its "
                         f"refit does not beat the default's refit by more than {min_gain:g} on every validation objective "
                         f"(gains {shown})")
