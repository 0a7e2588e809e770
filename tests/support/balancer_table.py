"""One row per registered balancing method: what its short test runs need.

``tests/balancing/test_base.py`` fails when a registered method has no row here, so adding a
balancer means its own module under ``recsys_mtl/balancing/`` plus one line below; the end-to-end
fit test (``tests/balancing/test_fit.py``) then trains with it through Lightning.
"""

from __future__ import annotations

#: method → pipeline overrides (on pipelines/synthetic_mmoe.yaml, tasks task0 / task1) for a fit of
#: a few dozen steps; step-count parameters are scaled down so the method acts within that run
SHORT_FIT: dict[str, list[str]] = {
    "equal": [],
    "static": ["balancing.params={weights: {task0: 1.0, task1: 0.5}}"],
    "uncertainty": [],
    "dwa": [],
    "gradnorm": [],
    "famo": [],
    "coba": ["balancing.params={warmup_steps: 2, history: 4}"],
    "pcgrad": [],
    "cagrad": [],
    "mgda": [],
    "aligned_mtl": [],
    "gcond": ["balancing.params={accum_steps: 2}"],
    "samo": [],
    "rep_mtl": [],
    "nash_mtl": [],
    "imtl": [],
    "db_mtl": [],
    "fairgrad": [],
    # the preference-weighted loss needs a preference-conditioned model
    "preference": ["model.name=preference", "model.params={base: mmoe, film_hidden: [4]}"],
}
