"""Expert-model zoo benchmark: test AUC per task (val-selected), mean ± std over seeds, params, rows/s.

    python benchmarks/census_models.py --models ple home adatt mmoe --seeds 1 2 3
    python benchmarks/census_models.py --models shared_bottom mmoe ple --seeds 1 2 3 \
        --synthetic-correlation -0.5

Each model's pipeline is ``pipelines/census_<model>.yaml`` (or a reference entry below). With
``--synthetic-correlation`` the same model section is trained on ``pipelines/synthetic_mmoe.yaml``
with that task correlation instead; ``--synthetic-pipeline PATH`` picks another synthetic
pipeline (e.g. ``pipelines/synthetic_low_correlation.yaml``). Binary tasks report test AUC,
regression tasks test RMSE. Prints a markdown table; ``--json`` also writes every run's
metrics. Run folders go to ``--runs-dir`` (a temporary folder by default), never the repo.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import yaml

from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"

#: reference models without a pipeline file of their own: (base pipeline, overrides)
REFERENCES: dict[str, tuple[str, list[str]]] = {
    "omoe": ("census_mmoe.yaml", ["model.name=omoe"]),
    "shared_bottom": (
        "census_mmoe.yaml",
        ["model.name=shared_bottom", "model.params={bottom_hidden: [128, 64], tower_hidden: [32]}", "encoder={}"],
    ),
    # capacity control: a Shared-Bottom about as large as PLE / AdaTT (the paper compares
    # models of similar size), so a gain of the expert models is not just more parameters
    "shared_bottom_wide": (
        "census_mmoe.yaml",
        ["model.name=shared_bottom", "model.params={bottom_hidden: [512, 128], tower_hidden: [32]}", "encoder={}"],
    ),
    # MMoE over a DCN-v2 cross network bottom (the stacked structure), full rank, 2 layers
    "mmoe_cross": ("census_mmoe.yaml", ["encoder.cross={kind: full, num_layers: 2}"]),
    # MMoE whose experts are each a (low-rank) cross network followed by the expert MLP
    "mmoe_cross_experts": ("census_mmoe.yaml", ["model.params.expert_type=cross", "model.params.expert_cross={kind: low_rank, rank: 32}"]),
    # MMoE as before the default recipe (census_income.yaml's 4-dim embeddings, standardized
    # numerics, no GBDT leaves): the step-time reference of the transformer comparisons
    "mmoe_plain": (
        "census_mmoe.yaml",
        ["spec=../feature_specs/census_income.yaml",
         "model.params={num_experts: 8, expert_hidden: [64], tower_hidden: [32]}", "encoder={}"],
    ),
    # MultiTab-Net with one attention head of width d_token (step-time comparison)
    "multitab_1head": ("census_multitab.yaml", ["model.params.n_heads=1"]),
    "multitab_2heads": ("census_multitab.yaml", ["model.params.n_heads=2"]),  # the pipeline's own value now
    # the previous default of 4 heads of 8 (docs/benchmarks.md, transformer step time)
    "multitab_4heads": ("census_multitab.yaml", ["model.params.n_heads=4"]),
    # half as wide: tokens of 16, one head, feed-forward 32 (step-time comparison, issue #25)
    # the recipe with each task's GBDT leaf embeddings summed (16 dims per task) instead of
    # concatenated (4 per tree: 800 inputs), issue #25
    "mmoe_gbdt_sum": ("census_mmoe.yaml", ["encoder.gbdt_leaves.pooling=sum", "encoder.gbdt_leaves.d_embedding=16"]),
    "multitab_2blocks": ("census_multitab.yaml", ["model.params.n_blocks=2"]),  # the pipeline's own value now
    "multitab_3blocks": ("census_multitab.yaml", ["model.params.n_blocks=3"]),  # the previous default
    "multitab_d16": ("census_multitab.yaml", ["model.params.d_token=16", "model.params.n_heads=1", "model.params.ffn_hidden=32"]),
}


def model_source(model: str) -> tuple[Path, list[str]]:
    own = PIPELINES / f"census_{model}.yaml"
    if own.is_file():
        return own, []
    if model in REFERENCES:
        base, overrides = REFERENCES[model]
        return PIPELINES / base, overrides
    raise SystemExit(f"no pipelines/census_{model}.yaml and no reference entry for {model!r}")


def synthetic_overrides(census_pipeline: Path, overrides: list[str], correlation: float | None) -> list[str]:
    """The census pipeline's model and encoder sections, moved onto the synthetic pipeline."""
    cfg, _ = load_pipeline(census_pipeline, overrides)
    params = yaml.safe_dump(cfg.model.params, default_flow_style=True).strip()
    encoder = yaml.safe_dump(cfg.encoder, default_flow_style=True).strip()
    moved = [f"model.name={cfg.model.name}", f"model.params={params}", f"encoder={encoder}"]
    return moved if correlation is None else [*moved, f"data.task_correlation={correlation}"]


def run_one(model: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    pipeline, overrides = model_source(model)
    if args.synthetic_correlation is not None or args.synthetic_pipeline is not None:
        overrides = synthetic_overrides(pipeline, overrides, args.synthetic_correlation)
        pipeline = Path(args.synthetic_pipeline or PIPELINES / "synthetic_mmoe.yaml")
    sets = [*overrides, f"trainer.seed={seed}", "trainer.progress_bar=false", *args.set]
    if args.data_seed_per_run:
        sets.append(f"data.seed={seed}")  # a fresh synthetic draw (weights, sines, rows) per seed
    cfg, spec = load_pipeline(pipeline, sets)
    cfg = cfg.model_copy(update={"runs_dir": Path(args.runs_dir), "name": f"bench_{model}"})
    result = fit(cfg, spec)
    m = result.metrics
    shown = " ".join(f"{k}={v:.4f}" for k, v in m["test"].items() if k.endswith(_SCORES))
    print(f"{model} seed {seed}: {shown}", file=sys.stderr)
    return m


def fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


#: the headline test metric per task: AUC for binary tasks, RMSE for regression tasks
_SCORES = ("/auc", "/rmse")


def task_mean(run: dict[str, Any], scored: list[str]) -> float:
    return statistics.mean(run["test"][k] for k in scored)


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    """One row per model; the last score columns are the mean over tasks and its paired
    difference from the first model, seed by seed (same seed = same data and split)."""
    first_model, first_runs = next(iter(results.items()))
    scored = sorted(k for k in first_runs[0]["test"] if k.endswith(_SCORES) and k.count("/") == 1)
    names = [k.replace("/", " test ").replace("auc", "AUC").replace("rmse", "RMSE") for k in scored]
    head = "| model | params | " + " | ".join(names) + f" | task mean | Δ mean vs {first_model} | train rows/s | best epochs |"
    lines = [head, "|" + "---|" * (len(scored) + 6)]
    for model, runs in results.items():
        scores = [fmt([r["test"][k] for r in runs]) for k in scored]
        means = [task_mean(r, scored) for r in runs]
        delta = fmt([m - task_mean(b, scored) for m, b in zip(means, first_runs, strict=True)])
        rps = statistics.mean(r["train_rows_per_sec"] for r in runs)
        epochs = ",".join(str(r["best_epoch"]) for r in runs)
        lines.append(f"| {model} | {runs[0]['params']:,} | " + " | ".join(scores) + f" | {fmt(means)} | {delta} | {rps:,.0f} | {epochs} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["ple", "home", "adatt"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra pipeline override")
    p.add_argument("--synthetic-correlation", type=float, default=None, help="train on synthetic data with this correlation")
    p.add_argument("--synthetic-pipeline", default=None, help="synthetic pipeline to train on (default pipelines/synthetic_mmoe.yaml)")
    p.add_argument("--data-seed-per-run", action="store_true", help="synthetic: also set data.seed to each seed")
    p.add_argument("--runs-dir", default=tempfile.mkdtemp(prefix="recsys_bench_"))
    p.add_argument("--json", help="write every run's metrics here")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    results = {m: [run_one(m, s, args) for s in args.seeds] for m in args.models}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
