"""Preference-conditioned model: trains on Dirichlet preferences, traces a front, exports with the preference as input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import features_only
from recsys_mtl.errors import SpecError
from recsys_mtl.export import export_run
from recsys_mtl.export.preprocess_graph import raw_inputs
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.spec import FeatureSpec
from recsys_mtl.train.run_folder import load_run
from tests.support.synthetic import make_context, synthetic_spec
from tests.support.export import make_run
from tests.support.run_once import built_once

PREF_MMOE = {"base": "mmoe", "base_params": {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]},
             "film_hidden": [4], "default_preference": [0.7, 0.3]}
#: the held-out rows of the shared export
TEST = generate(SyntheticConfig(rows=200, num_tasks=2, seed=2))


@pytest.fixture(scope="module")
def preference_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, export folder) of an untrained preference model (weights jittered: FiLM is not the
    identity), exported once for the module's tests (an export costs seconds of torch.onnx)."""
    def build(root: Path) -> None:
        run = make_run(root, synthetic_spec(2), generate(SyntheticConfig(rows=500, num_tasks=2, seed=1)), "preference", PREF_MMOE)
        export_run(run, root / "exp", parity_rows=100, test=TEST)

    root = built_once(tmp_path_factory, "preference_export", build)
    return root / "run-preference", root / "exp"


@pytest.mark.slow
def test_export_takes_the_preference_and_matches_torch(preference_export: tuple[Path, Path]) -> None:
    run, out_dir = preference_export
    test = TEST
    meta = json.loads((out_dir / "metadata.json").read_text())
    (cond,) = meta["conditions"]
    assert cond["name"] == "preference" and cond["shape"] == ["batch", 2]
    np.testing.assert_allclose(cond["default"], [0.7, 0.3], atol=1e-6)
    assert 'name: "preference"' in (out_dir / "triton" / "exp" / "config.pbtxt").read_text()

    loaded = load_run(run)
    pre, model = loaded.preprocessor, loaded.model
    sess = ort.InferenceSession(str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = raw_feed(raw_inputs(pre), test)
    cols = features_only(pre.transform(test).columns())
    scores = []
    for p in ([1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.9, 0.1], [0.2, 0.8]):
        pref = np.tile(np.asarray(p, np.float32), (test.height, 1))
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {**feed, "preference": pref})))
        with torch.no_grad():
            ref = model({**cols, "preference": torch.from_numpy(pref)})
        for t in ("task0", "task1"):
            np.testing.assert_allclose(got[t], torch.sigmoid(ref[t]).numpy(), atol=1e-5, rtol=0)
        scores.append(got["task0"])
    assert not np.allclose(scores[0], scores[1], atol=1e-4)  # the preference input changes the scores
    # per-row preferences: each row scored under its own vector
    mixed = np.where(np.arange(test.height)[:, None] % 2 == 0, [[1.0, 0.0]], [[0.0, 1.0]]).astype(np.float32)
    got = sess.run(["task0"], {**feed, "preference": mixed})[0]
    np.testing.assert_allclose(got[::2], scores[0][::2], atol=1e-6)
    np.testing.assert_allclose(got[1::2], scores[1][1::2], atol=1e-6)


@pytest.mark.slow
def test_predictor_fills_the_default_preference(preference_export: tuple[Path, Path]) -> None:
    from serving.predictor import Predictor

    run, out_dir = preference_export
    df = generate(SyntheticConfig(rows=300, num_tasks=2, seed=1))
    pred = Predictor(out_dir, intra_threads=1, warmup=True)
    feed = raw_feed(raw_inputs(load_run(run).preprocessor), df.head(20))
    default = pred.predict(feed)["task0"]
    given = pred.predict({**feed, "preference": np.tile(np.float32([0.7, 0.3]), (20, 1))})["task0"]
    other = pred.predict({**feed, "preference": np.tile(np.float32([0.0, 1.0]), (20, 1))})["task0"]
    np.testing.assert_allclose(default, given, atol=1e-6)
    assert not np.allclose(default, other, atol=1e-4)

    # per request, as a client sends it: JSON rows (and over HTTP) may set the preference per row
    from fastapi.testclient import TestClient

    from serving.app import ServeSettings, create_app
    from serving.schema import RequestError

    rows = df.head(20).select(sorted(pred.schema.names)).to_dicts()
    np.testing.assert_allclose(pred.predict_rows(rows)["task0"], default, atol=1e-6)
    mixed = [dict(r, preference=[0.0, 1.0]) if i % 2 else r for i, r in enumerate(rows)]
    got = pred.predict_rows(mixed)["task0"]
    np.testing.assert_allclose(got[1::2], other[1::2], atol=1e-6)
    np.testing.assert_allclose(got[::2], default[::2], atol=1e-6)
    for bad in ([1.0], [0.5, "x"], "0.5,0.5", [float("inf"), 0.0]):
        with pytest.raises(RequestError, match="'preference' must be a list of 2 finite numbers") as err:
            pred.predict_rows([dict(rows[0], preference=bad)])
        assert err.value.field == "preference"
    with TestClient(create_app(pred, ServeSettings(max_wait_ms=1))) as client:
        r = client.post("/predict", json=[dict(rows[1], preference=[0.0, 1.0]), rows[0]])
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["outputs"]["task0"], [other[1], default[0]], atol=1e-6)
        bad = client.post("/predict", json=dict(rows[0], preference=[1, 2, 3]))
        assert bad.status_code == 422 and bad.json()["field"] == "preference"
        schema = client.get("/openapi.json").json()
        assert "preference" in json.dumps(schema)


def _toy() -> tuple[ModelContext, dict[str, torch.Tensor]]:
    """Two regression targets 60° apart in a 2-d input; a 1-unit bottleneck cannot fit both, and
    the best compromise moves continuously with the preference (a convex front)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 2))
    df = pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "y0": x[:, 0], "y1": 0.5 * x[:, 0] + 0.866 * x[:, 1]})
    spec = FeatureSpec.model_validate({
        "name": "toy",
        "tasks": [{"name": "t0", "label": "y0", "type": "regression"}, {"name": "t1", "label": "y1", "type": "regression"}],
        "features": [{"name": "a", "kind": "numeric"}, {"name": "b", "kind": "numeric"}],
    })
    pre = Preprocessor.fit(spec, df)
    return ModelContext(layout=pre.layout, tasks=spec.tasks), pre.transform(df).columns()


@pytest.mark.slow
def test_preference_moves_monotonically_along_the_front() -> None:
    torch.manual_seed(0)
    ctx, cols = _toy()
    model = build_model("preference", {"base": "shared_bottom", "film_hidden": [16],
                                       "base_params": {"bottom_hidden": [1], "tower_hidden": [], "activation": "tanh"}}, ctx)
    balancer = build_balancer("preference", {}, model.task_names)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    drawn = []
    model.train()
    for step in range(500):  # the training step's path: model draws p, balancer weighs by it
        i = torch.randint(0, 1000, (128,))
        batch = {k: v[i] for k, v in cols.items()}
        out = model(features_only(batch))
        losses = torch.stack([F.mse_loss(out[t], batch["labels"][:, k]) for k, t in enumerate(model.task_names)])
        loss = balancer(losses, StepContext(step=step, epoch=0, model=model))
        torch.testing.assert_close(loss, (losses * model.last_preference).sum())
        drawn.append(model.last_preference.clone())
        opt.zero_grad()
        loss.backward()
        opt.step()
    drawn_t = torch.stack(drawn)
    assert torch.allclose(drawn_t.sum(1), torch.ones(len(drawn))) and drawn_t[:, 0].std() > 0.2  # Dirichlet(1, 1)
    torch.testing.assert_close(balancer.last_weights, 2 * drawn[-1])
    model.eval()
    front = []
    with torch.no_grad():
        for lam in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95):
            out = model({**features_only(cols), "preference": torch.tensor([lam, 1 - lam]).expand(1000, -1)})
            front.append([float(F.mse_loss(out[t], cols["labels"][:, k])) for k, t in enumerate(model.task_names)])
    l0, l1 = np.array(front).T
    assert np.all(np.diff(l0) < 1e-3) and np.all(np.diff(l1) > -1e-3), front  # t0 better, t1 worse as p_0 grows
    assert l0[0] - l0[-1] > 0.3 and l1[-1] - l1[0] > 0.3, front  # and it really travels


def test_config_errors() -> None:
    ctx, _ = make_context(2, rows=100)
    with pytest.raises(SpecError, match="not a flat-input family"):
        build_model("preference", {"base": "multitab"}, ctx)
    with pytest.raises(SpecError, match="default_preference: needs 2 values"):
        build_model("preference", {"default_preference": [1, 0, 0]}, ctx)
    with pytest.raises(SpecError, match="needs a preference-conditioned model"):
        build_balancer("preference", {}, ["task0", "task1"])(torch.ones(2), StepContext(step=0, epoch=0, model=torch.nn.Linear(1, 1)))
