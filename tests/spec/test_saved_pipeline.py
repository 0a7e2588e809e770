"""A run folder's pipeline.yaml: the fields that applied, with their effective values, and it
loads back to the same config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys_mtl.balancing import BALANCERS
from recsys_mtl.models import MODELS
from recsys_mtl.nn.encoder_config import encoder_config
from recsys_mtl.spec import load_pipeline
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.train.fit import fit
from recsys_mtl.train.run_folder import applied_pipeline

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_only_fields_that_applied_are_saved_and_they_load_back(tmp_path: Path) -> None:
    raw = {
        "name": "files",
        "spec": str(ROOT / "feature_specs" / "synthetic.yaml"),
        "data": {"kind": "files", "train": "train.parquet", "valid": "valid.parquet", "test": "test.parquet", "split_seed": 7},
        "model": {"name": "mmoe", "params": {"num_experts": 3}},
        "trainer": {"lr": 0.01, "gradient_clip_val": 1.0},
        "tune": {"space": {"trainer.lr": {"type": "float", "low": 0.001, "high": 0.1}}},
        "baselines": {"seeds": [1]},
    }
    cfg, _ = load_pipeline(write(tmp_path / "p.yaml", raw))
    saved = applied_pipeline(cfg)
    # both held-out files given: nothing was carved from train, so the split fields are left out
    assert saved["data"] == {"kind": "files", "train": str(tmp_path / "train.parquet"),
                             "valid": str(tmp_path / "valid.parquet"), "test": str(tmp_path / "test.parquet")}
    assert "tune" not in saved and "calibration" not in saved and "export" not in saved
    assert saved["baselines"] == {"seeds": [1]}  # set, so kept
    # effective values are written out: the seed, the model's defaults, a set clip value; no None
    assert saved["trainer"]["seed"] == 42 and saved["trainer"]["gradient_clip_val"] == 1.0
    assert "embedding_lr" not in saved["trainer"] and "limit_train_batches" not in saved["trainer"]
    params = saved["model"]["params"]
    assert params["num_experts"] == 3 and params["dropout"] == 0.0
    # the encoder section, effective values written out; cross: None by default, so left out
    assert saved["encoder"]["standardize_targets"] is True and saved["encoder"]["id_dropout"]["rate"] == 0.05
    assert "cross" not in saved["encoder"] and list(saved).index("encoder") == list(saved).index("model") + 1
    assert MODELS.config("mmoe", params) == MODELS.config("mmoe", {"num_experts": 3})
    assert saved["balancing"] == {"name": "equal", "params": {"collapse_ratio": 0.01, "collapse_window": 200}}

    (tmp_path / "run").mkdir()
    loaded, _ = load_pipeline(write(tmp_path / "run" / "pipeline.yaml", saved))
    assert loaded == PipelineConfig.model_validate(saved)
    # the same config as the original in every field that applied
    assert loaded.model_dump(exclude={"data", "model", "balancing", "tune", "encoder"}) == cfg.model_dump(exclude={"data", "model", "balancing", "tune", "encoder"})
    assert encoder_config(loaded.encoder) == encoder_config(cfg.encoder)
    assert loaded.data.model_dump(exclude=cfg.data.inapplicable()) == cfg.data.model_dump(exclude=cfg.data.inapplicable())
    assert MODELS.config("mmoe", loaded.model.params) == MODELS.config("mmoe", cfg.model.params)
    assert BALANCERS.config("equal", loaded.balancing.params) == BALANCERS.config("equal", cfg.balancing.params)
    assert applied_pipeline(loaded) == saved  # saving again changes nothing


@pytest.mark.slow
def test_fit_saves_the_applied_pipeline_and_a_refit_from_it_is_the_same(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=300", f"data.cache_dir={tmp_path / 'cache'}", f"runs_dir={tmp_path / 'runs'}",
        "trainer.max_epochs=1", "trainer.batch_size=128", "trainer.progress_bar=false", "trainer.plots=false",
    ])
    run = fit(cfg, spec).run_dir
    text = (run / "pipeline.yaml").read_text()
    assert text == yaml.safe_dump(applied_pipeline(cfg), sort_keys=False)
    assert "tune:" not in text and "null" not in text
    loaded, _ = load_pipeline(run / "pipeline.yaml")
    assert loaded == PipelineConfig.model_validate(applied_pipeline(cfg))
    assert yaml.safe_dump(applied_pipeline(loaded), sort_keys=False) == text  # what a refit from it would save


def test_a_run_folder_saved_before_the_encoder_section_still_loads(tmp_path: Path) -> None:
    from recsys_mtl.data.synthetic import SyntheticConfig, generate
    from recsys_mtl.train.run_folder import load_run
    from tests.support.synthetic import synthetic_spec
    from tests.support.export import make_run

    encoder = {"numeric_embedding": {"kind": "periodic", "d_embedding": 4}, "id_dropout": {"rate": 0.05, "min_vocab": 1000},
               "standardize_targets": True}
    run = make_run(tmp_path, synthetic_spec(2), generate(SyntheticConfig(rows=600, num_tasks=2, seed=1)), encoder=encoder)
    raw = yaml.safe_load((run / "pipeline.yaml").read_text())
    raw["model"]["params"].update(raw.pop("encoder"))  # the layout of a run folder written before the section
    (run / "pipeline.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.warns(FutureWarning, match="moved to the pipeline's `encoder:` section"):
        loaded = load_run(run)
    assert type(loaded.model.encoder.numeric_embedding).__name__ == "PeriodicEmbeddings"
    assert loaded.cfg.encoder["numeric_embedding"]["kind"] == "periodic"
