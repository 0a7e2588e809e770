"""R-MTGB on synthetic data: a planted outlier task is flagged, none is flagged without one."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lightgbm")

from recsys_mtl.baselines.config import LightGBMParams, RMTGBParams  # noqa: E402
from recsys_mtl.baselines.rmtgb import RMTGB  # noqa: E402

SMALL = LightGBMParams(num_leaves=15, learning_rate=0.1, num_threads=1)


def planted(n: int, seed: int, outlier: bool, tasks: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tasks 1.. share one function (small task-specific terms); task 0 is its negation when ``outlier``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    f = np.sin(2 * x[:, 0]) + x[:, 1] ** 2 - x[:, 2]
    first = -f + 0.5 * x[:, 3] if outlier else f
    y = np.stack([first if t == 0 else f + 0.1 * t * x[:, 4] for t in range(tasks)], 1) + 0.3 * rng.standard_normal((n, tasks))
    return x, y.astype(np.float32), np.ones((n, tasks), np.float32)


def fit(kind: str, outlier: bool) -> RMTGB:
    x, y, w = planted(2000, 0, outlier)
    xv, yv, wv = planted(500, 1, outlier)
    if kind == "binary":
        y, yv = (y > 0).astype(np.float32), (yv > 0).astype(np.float32)
    model = RMTGB(kind=kind, num_tasks=4, lgb=SMALL, params=RMTGBParams(group_rounds=60), seed=0)  # type: ignore[arg-type]
    return model.fit(x, y, w, xv, yv, wv)


@pytest.mark.parametrize("kind", ["regression", "binary"])
def test_planted_outlier_task_is_flagged(kind: str) -> None:
    model = fit(kind, outlier=True)
    assert model.outlier_tasks == [0]
    assert model.sigma[0] > 0.9 and (model.sigma[1:] < 0.2).all()


def test_no_outlier_without_one() -> None:
    model = fit("regression", outlier=False)
    assert model.outlier_tasks == []
    assert np.abs(model.sigma - 0.5).max() < 0.2


def test_stages_beat_the_shared_function_alone() -> None:
    """The group and task stages must fit the outlier task the shared stage cannot."""
    x, y, w = planted(2000, 0, True)
    xv, yv, wv = planted(500, 1, True)
    full = RMTGB(kind="regression", num_tasks=4, lgb=SMALL, params=RMTGBParams(group_rounds=60), seed=0).fit(x, y, w, xv, yv, wv)
    shared = RMTGB(kind="regression", num_tasks=4, lgb=SMALL, params=RMTGBParams(group_rounds=1, task_rounds=0), seed=0).fit(x, y, w, xv, yv, wv)
    rmse = lambda m: np.sqrt(((m.predict_raw(xv) - yv) ** 2).mean(0))  # noqa: E731
    assert rmse(full)[0] < 0.6 * rmse(shared)[0]
    assert (rmse(full) < 0.6).all()
