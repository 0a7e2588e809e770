"""The pipeline's ``encoder:`` section: validated apart from model params, migrated from old
pipelines with a warning, refused by families that do not take an option, saved in run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys_mtl.errors import SpecError
from recsys_mtl.models import MODELS, build_model
from recsys_mtl.models.base import FlatInputModel, model_context
from recsys_mtl.nn.encoder_config import EncoderConfig, encoder_config
from recsys_mtl.spec import load_pipeline
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.train.run_folder import applied_pipeline
from tests.support.synthetic import synthetic_spec

ROOT = Path(__file__).resolve().parents[2]


def _raw(**extra: Any) -> dict[str, Any]:
    return {"name": "p", "spec": str(ROOT / "feature_specs" / "synthetic.yaml"),
            "data": {"kind": "synthetic"}, "model": {"name": "mmoe", "params": {"num_experts": 3}}, **extra}


def test_old_pipeline_is_migrated_with_a_warning_naming_the_move(tmp_path: Path) -> None:
    raw = _raw()
    raw["model"]["params"].update({"numeric_embedding": {"kind": "periodic"}, "id_dropout": {"rate": 0.1}})
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.warns(FutureWarning, match=r"model.params.numeric_embedding, model.params.id_dropout: moved to .*encoder"):
        cfg, _ = load_pipeline(path)
    assert cfg.model.params == {"num_experts": 3}
    assert cfg.encoder == {"numeric_embedding": {"kind": "periodic"}, "id_dropout": {"rate": 0.1}}
    # the saved pipeline has the new layout and loads without a warning
    saved = applied_pipeline(cfg)
    assert "numeric_embedding" not in saved["model"]["params"]
    assert saved["encoder"]["numeric_embedding"]["kind"] == "periodic" and saved["encoder"]["id_dropout"]["rate"] == 0.1
    assert PipelineConfig.model_validate(saved).encoder == saved["encoder"]


def test_an_option_in_both_places_is_refused() -> None:
    raw = _raw(encoder={"cross": {"kind": "full"}})
    raw["model"]["params"]["cross"] = {"kind": "low_rank"}
    with pytest.raises(ValueError, match="model.params.cross and encoder.cross are both set"):
        PipelineConfig.model_validate(raw)


def test_moved_key_in_model_params_given_directly_says_where_it_went(fitted) -> None:
    pre, _ = fitted
    ctx = model_context(pre.layout, synthetic_spec(2).tasks)
    with pytest.raises(SpecError, match=r"model.params.*gbdt_leaves: moved .*encoder.gbdt_leaves"):
        build_model("mmoe", {"gbdt_leaves": {}}, ctx)
    # a wrapped model's params are not migrated: the error names the move too
    with pytest.raises(SpecError, match="cross: moved"):
        build_model("preference", {"base_params": {"cross": {"kind": "full"}}}, ctx)


def test_unknown_encoder_option_is_named() -> None:
    with pytest.raises(SpecError, match="encoder.numeric_embeding: unknown option.*numeric_embedding"):
        encoder_config({"numeric_embeding": {}})


def test_families_declare_their_options() -> None:
    options = set(EncoderConfig.model_fields)
    for name in MODELS.names():
        cls = MODELS.get(name)
        assert cls.encoder_options <= options, name
        assert {"id_dropout", "standardize_targets"} <= cls.encoder_options, name
        if issubclass(cls, FlatInputModel):
            assert {"numeric_embedding", "cross", "gbdt_leaves", "wide"} <= cls.encoder_options, name
    assert "cross" not in MODELS.get("ft_transformer").encoder_options


def test_token_model_default_numeric_embedding_and_override(fitted) -> None:
    pre, _ = fitted
    tasks = synthetic_spec(2).tasks
    small = {"d_token": 8, "n_blocks": 1, "n_heads": 1, "ffn_hidden": 8}
    default = build_model("multitab", small, model_context(pre.layout, tasks))
    assert type(default.tokenizer.numeric.values).__name__ == "PeriodicEmbeddings"
    linear = build_model("multitab", small, model_context(pre.layout, tasks, {"numeric_embedding": {"kind": "linear"}}))
    assert type(linear.tokenizer.numeric.values).__name__ != "PeriodicEmbeddings"


def test_embedding_dim_auto_sizes_vocabulary_tables_by_rows(fitted) -> None:
    pre, table = fitted
    ctx = model_context(pre.layout, synthetic_spec(2).tasks, {"embedding_dim": {"multiplier": 2, "max_dim": 6}})
    for t, (rows, dim) in ctx.layout.tables.items():
        if t in pre.layout.table_counts:
            assert dim == min(6, max(2, round(2 * rows ** 0.25))), t
        else:
            assert dim == pre.layout.tables[t][1], t
    assert {d for _, d in ctx.layout.tables.values()} != {d for _, d in pre.layout.tables.values()}
    model = build_model("mmoe", {}, ctx)
    batch = {"categorical": table.categorical[:8], "numeric": table.numeric[:8], **{f"seq.{k}": v[:8] for k, v in table.sequences.items()}}
    assert model(batch)["task0"].shape == (8,)
    assert model.encoder.embeddings["cat0"].weight.shape[1] == ctx.layout.tables["cat0"][1]
