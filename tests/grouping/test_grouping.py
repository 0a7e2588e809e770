"""Task grouping: data maps by hand, planted clusters recovered, lookahead affinity, the group command."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from recsys_mtl.cli import main
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import features_only
from recsys_mtl.grouping import DataMaps, LookaheadAffinity, group_by_affinity, group_by_data_maps, lookahead_affinity
from recsys_mtl.grouping.datamaps import confidence_variability, true_class_probability
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.spec import load_pipeline
from recsys_mtl.spec.features import Task
from recsys_mtl.train.fit import fit
from tests.support.synthetic import make_context, synthetic_spec

ROOT = Path(__file__).resolve().parents[2]


def test_confidence_and_variability_by_hand() -> None:
    probs = np.array([[[0.2, 0.9]], [[0.4, 0.9]], [[0.6, 0.9]]])  # (E=3, T=1, N=2)
    conf, var = confidence_variability(probs)
    np.testing.assert_allclose(conf, [[0.4, 0.9]])
    np.testing.assert_allclose(var, [[np.sqrt(((0.2 - 0.4) ** 2 + 0 + (0.6 - 0.4) ** 2) / 3), 0.0]])


def test_true_class_probability() -> None:
    tasks = [Task(name="b", label="b", type="binary"), Task(name="m", label="m", type="multiclass", num_classes=3),
             Task(name="r", label="r", type="regression")]
    logits = {"b": torch.tensor([0.0, 2.0, 2.0]), "m": torch.log(torch.tensor([[0.2, 0.3, 0.5]] * 3)), "r": torch.zeros(3)}
    labels = torch.tensor([[1.0, 2, 0], [0, 0, 0], [1, 1, 0]])
    weights = torch.tensor([[1.0, 1, 1], [1, 1, 1], [0, 1, 1]])
    p = true_class_probability(logits, labels, weights, tasks)
    s = float(torch.sigmoid(torch.tensor(2.0)))
    np.testing.assert_allclose(p[0, :2], [0.5, 1 - s], atol=1e-6)
    assert torch.isnan(p[0, 2])  # masked row
    np.testing.assert_allclose(p[1], [0.5, 0.2, 0.3], atol=1e-6)
    assert torch.isnan(p[2]).all()  # regression: no true class


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("grouping_run")
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1200", f"data.cache_dir={tmp / 'cache'}", "trainer.max_epochs=3", "trainer.batch_size=128",
        "trainer.progress_bar=false", "trainer.plots=false", f"runs_dir={tmp / 'runs'}", "trainer.patience=10",
    ])
    return fit(cfg, spec, extra_callbacks=[DataMaps(max_rows=300), LookaheadAffinity(every_n_steps=3)]).run_dir


@pytest.mark.slow
def test_data_maps_of_a_fit(toy_run: Path) -> None:
    with np.load(toy_run / "datamaps.npz", allow_pickle=False) as z:
        probs, rows, tasks = z["probs"], z["rows"], list(z["tasks"])
    assert probs.shape == (3, 2, 300) and tasks == ["task0", "task1"] and len(set(rows.tolist())) == 300
    # every sampled row passes through one training batch per epoch
    assert np.isfinite(probs).all() and ((probs > 0) & (probs < 1)).all()
    assert not np.allclose(probs[0], probs[-1])  # training moved them
    aff = json.loads((toy_run / "affinity.json").read_text())
    assert aff["tasks"] == tasks and np.asarray(aff["affinity"]).shape == (2, 2) and aff["steps"] > 0


def test_group_command_prints_plots_and_writes_home_groups(toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text((ROOT / "pipelines" / "synthetic_mmoe.yaml").read_text())
    png = tmp_path / "g.png"
    assert main(["group", str(toy_run), "--groups", "2", "--png", str(png), "--write-pipeline", str(pipeline)]) == 0
    out = capsys.readouterr().out
    assert "data maps (STG-MTL)" in out and "lookahead affinity (TAG)" in out and "affinity:" in out
    assert png.stat().st_size > 1000
    written = yaml.safe_load((tmp_path / "p_grouped.yaml").read_text())
    assert written["model"]["name"] == "home"
    assert sorted(t for g in written["model"]["params"]["groups"].values() for t in g) == ["task0", "task1"]
    assert main(["group", str(tmp_path)]) == 2  # no data maps: a clear error
    assert "--data-maps" in capsys.readouterr().err


def test_grouping_recovers_planted_clusters() -> None:
    """8 tasks, two planted clusters (cos 0.81 within, −0.65 across): the data maps of one short
    multitask run separate them without being told the number of groups."""
    torch.manual_seed(0)
    T = 8
    spec = synthetic_spec(T)
    df = generate(SyntheticConfig(rows=2000, num_tasks=T, task_correlation=0.9, task_groups=2, group_correlation=-0.8, complexity=1, seed=0))
    pre = Preprocessor.fit(spec, df)
    table = pre.transform(df)
    cols = table.columns()
    model = build_model("mmoe", {"num_experts": 4, "expert_hidden": [16], "tower_hidden": [8]},
                        ModelContext(layout=pre.layout, tasks=spec.tasks))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    maps = DataMaps(max_rows=800)
    maps.sample(len(table))
    for _ in range(5):
        perm = torch.randperm(len(table))
        for s in range(0, len(table), 256):
            b = {k: v[perm[s:s + 256]] for k, v in cols.items()}
            out = model(features_only(b))
            maps.observe(out, perm[s:s + 256], b["labels"], b["weights"], spec.tasks)  # the training pass
            loss = sum(F.binary_cross_entropy_with_logits(out[f"task{k}"], b["labels"][:, k]) for k in range(T))
            opt.zero_grad()
            loss.backward()
            opt.step()
        maps.end_epoch()
    g = group_by_data_maps(np.stack(maps.probs), [t.name for t in spec.tasks])
    assert sorted(map(sorted, g.groups().values())) == [["task0", "task2", "task4", "task6"], ["task1", "task3", "task5", "task7"]]
    assert g.membership.max(1).min() > 0.9


def test_data_maps_record_the_training_passes_through_lightning(tmp_path: Path) -> None:
    """The callback keeps the logits of each batch's training forward (dropout on, the weights of
    that step), as the cartography reference does; not an eval pass at the epoch's end."""
    import lightning as L

    from recsys_mtl.balancing import StepContext, build_balancer
    from recsys_mtl.spec.pipeline import TrainerConfig
    from recsys_mtl.train.datamodule import TableDataModule
    from recsys_mtl.train.module import MultiTaskModule

    class Spy(MultiTaskModule):
        """Keeps every training batch's row indices and the logits its training step computed."""

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            out = self(batch)
            self.seen.append((batch["datamaps_row"].clone(), {k: v.detach().clone() for k, v in out.items()}))
            return self.balancer(self.task_losses(out, batch), StepContext(step=0, epoch=0))

    torch.manual_seed(0)
    ctx, table = make_context(2, rows=200)
    model = build_model("mmoe", {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4], "dropout": 0.5}, ctx)
    module = Spy(model, ctx.tasks, build_balancer("equal", {}, model.task_names), TrainerConfig(lr=0.05))
    module.seen = []
    maps = DataMaps(max_rows=50)
    dm = TableDataModule(table, table, None, batch_size=32, eval_batch_size=64, seed=0)
    trainer = L.Trainer(max_epochs=2, callbacks=[maps], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    with np.load(tmp_path / "datamaps.npz", allow_pickle=False) as z:
        probs, rows = z["probs"], z["rows"]
    assert probs.shape == (2, 2, 50)
    per_epoch = len(module.seen) // 2
    for epoch in range(2):  # by hand: p(true class) from the spied training logits of the sampled rows
        index = torch.cat([i for i, _ in module.seen[epoch * per_epoch:(epoch + 1) * per_epoch]])
        logits = {t: torch.cat([o[t] for _, o in module.seen[epoch * per_epoch:(epoch + 1) * per_epoch]]) for t in ("task0", "task1")}
        where = {int(r): j for j, r in enumerate(index)}
        pick = torch.tensor([where[int(r)] for r in rows])
        want = true_class_probability({t: v[pick] for t, v in logits.items()}, table.labels[torch.from_numpy(rows)],
                                      table.weights[torch.from_numpy(rows)], ctx.tasks).numpy()
        np.testing.assert_allclose(probs[epoch], want, atol=1e-6)
    # an eval pass with the final weights (the old behaviour) gives other values
    model.eval()
    with torch.no_grad():
        out = model(features_only({k: v[torch.from_numpy(rows)] for k, v in table.columns().items()}))
    evald = true_class_probability(out, table.labels[torch.from_numpy(rows)], table.weights[torch.from_numpy(rows)], ctx.tasks).numpy()
    assert np.abs(evald - probs[-1]).max() > 1e-3


def test_lookahead_affinity_equals_a_manual_sgd_step() -> None:
    torch.manual_seed(0)
    ctx, table = make_context(3, rows=128)
    model = build_model("mmoe", {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}, ctx)
    batch = table.columns()

    def losses(out: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([F.binary_cross_entropy_with_logits(out[f"task{k}"], b["labels"][:, k]) for k in range(3)])

    z = lookahead_affinity(model, batch, losses, lr=0.5)
    model.eval()
    before = losses(model(features_only(batch)), batch).detach()
    for i in range(3):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        losses(m(features_only(batch)), batch)[i].backward()
        opt.step()
        with torch.no_grad():
            after = losses(m(features_only(batch)), batch)
        torch.testing.assert_close(z[i], 1 - after / before, atol=1e-5, rtol=1e-4)
    assert (z.diagonal() > 0).all()  # a step on a task lowers its own loss


def test_group_by_affinity_finds_the_best_partition() -> None:
    a = np.full((5, 5), -0.2)
    for grp in ([0, 3], [1, 2, 4]):
        a[np.ix_(grp, grp)] = 0.5
    g = group_by_affinity(a, [f"t{i}" for i in range(5)], 2)
    assert g.groups() == {"g0": ["t0", "t3"], "g1": ["t1", "t2", "t4"]}


def test_synthetic_planted_groups_correlate_within_and_anticorrelate_across() -> None:
    df = generate(SyntheticConfig(rows=4000, num_tasks=4, task_correlation=0.9, task_groups=2, group_correlation=-0.8, complexity=0))
    c = np.corrcoef(np.stack([df[f"y{k}"].to_numpy() for k in range(4)]))
    assert c[0, 2] > 0.7 and c[1, 3] > 0.7 and c[0, 1] < -0.5 and c[2, 3] < -0.5
    with pytest.raises(ValueError, match="task_groups"):
        SyntheticConfig(num_tasks=2, task_groups=3)
