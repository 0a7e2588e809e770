"""Sequence models on sequence-driven synthetic data (3 seeds): DIN target attention vs mean
pooling under MMoE, and DTRN (MMoE inside) with and without its task-specific interest module.

    python benchmarks/din_sequences.py --rows 40000 --seeds 1 2 3 --epochs 8
    python benchmarks/din_sequences.py --configs target_attention dtrn dtrn_interest --epochs 6 --batch-size 256
    python benchmarks/din_sequences.py --configs target_attention lightgbm lightgbm_repeat lightgbm_match single_task
    python benchmarks/din_sequences.py --configs target_attention_match lightgbm_builtin_match lightgbm_match

Data: :mod:`recsys_mtl.data.synthetic_sequences` (targets depend on candidate × history), one
generated table split 70/15/15 (seed 2018); spec ``feature_specs/sequence_synthetic.yaml`` with
the history pooled by ``target_attention`` or ``mean`` (everything else equal). Configurations
(``--configs``): ``target_attention`` and ``mean`` are MMoE with that pooling; ``dtrn`` is DTRN's
per-task SENet around the same MMoE, ``dtrn_interest`` adds the task-specific interest module
(both with target attention). Selection on validation click AUC; prints test AUC and GAUC (by
user) per task, mean ± std over seeds, train rows/s and wall seconds per seed. Run folders and
data go to a temporary folder.

From pipeline files (``pipelines/synthetic_sequences_*.yaml``, data kind ``synthetic_sequences``):
fit each arm with the CLI per seed, then ``--collect`` reads the run folders into one table with
each arm's paired difference against its plain arm (same seed)::

    recsys-mtl fit pipelines/synthetic_sequences_rmtl.yaml --set trainer.seed=1 --set runs_dir=RUNS/rmtl/seed1
    python benchmarks/din_sequences.py --collect RUNS --arms mmoe rmtl --against mmoe --json out.json

Baselines on the same table, split and seeds (``--configs lightgbm lightgbm_match single_task``):

- ``lightgbm``: the project's LightGBM per task (:mod:`recsys_mtl.baselines`) as the ``baseline``
  command runs it: it gets no column for the ``history`` list, so it sees ``item_id`` and
  ``hour`` only;
- ``lightgbm_match``: the same trainer on those columns plus what a practitioner would derive
  from the raw ``item_id`` and ``history`` columns: history length, how often the candidate
  occurs in the history, and the mean and max item-item similarity of the candidate to the
  history items (cosine of the items' co-occurrence counts over the train split's histories:
  the categories the targets depend on are hidden, co-occurrence is how one would recover them);
  ``lightgbm_repeat`` is the ablation with history length and repeat count only;
- ``lightgbm_builtin_match``: the same trainer on the spec plus the built-in ``match`` feature
  (:data:`BUILTIN_MATCH`: hit, count, recency, history length of ``item_id`` in ``history``),
  whose columns reach the trees as numbers; ``target_attention_match`` is MMoE + DIN on that spec;
- ``lightgbm_builtin_cooc`` / ``target_attention_cooc``: the same trainer / MMoE + DIN on
  ``feature_specs/sequence_synthetic_match.yaml``: built-in ``match`` plus ``cooccurrence`` (mean,
  max, recency-weighted co-occurrence similarity of the candidate to the history, fitted on train);
  ``--cooc-spec`` names another spec of ``feature_specs/`` for them (e.g.
  ``sequence_synthetic_match_kernels.yaml``: plus the kernel-pooled similarity histogram);
- ``single_task``: the project's single-task baseline, one MMoE per task with DIN pooling (the
  best pooling in the table above).

LightGBM uses the project defaults (63 leaves, learning rate 0.05, early stopping after 50
rounds on the validation AUC, one thread); the test split is scored once per fit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml
from torchmetrics.functional.classification import binary_auroc

from recsys_mtl.baselines.config import LightGBMParams
from recsys_mtl.baselines.lightgbm_tasks import fit_lightgbm_per_task
from recsys_mtl.baselines.single_task import fit_single_task
from recsys_mtl.baselines.tabular import TreeColumns
from recsys_mtl.data.sources import load_splits
from recsys_mtl.data.synthetic_sequences import SequenceDataConfig, generate_sequences
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import Prepared, fit, prepare

ROOT = Path(__file__).resolve().parents[1]
POOLINGS = {
    "target_attention": {"pooling": "target_attention", "attention": {"query": "item_id"}},
    "mean": {"pooling": "mean"},
}
MMOE = {"num_experts": 4, "expert_hidden": [64], "tower_hidden": [32]}
#: configuration → (history pooling, model)
CONFIGS = {
    "target_attention": ("target_attention", {"name": "mmoe", "params": MMOE}),
    "mean": ("mean", {"name": "mmoe", "params": MMOE}),
    "dtrn": ("target_attention", {"name": "dtrn", "params": {"inner": {"name": "mmoe", "params": MMOE}}}),
    "dtrn_interest": ("target_attention", {"name": "dtrn", "params": {
        "inner": {"name": "mmoe", "params": MMOE}, "interest": {}}}),
    # the same MMoE + DIN with the built-in match feature below added to the spec
    "target_attention_match": ("target_attention", {"name": "mmoe", "params": MMOE}),
    # the same on feature_specs/sequence_synthetic_match.yaml (match + cooccurrence)
    "target_attention_cooc": ("target_attention", {"name": "mmoe", "params": MMOE}),
}
#: configurations on feature_specs/sequence_synthetic_match.yaml (built-in match + cooccurrence) instead of
#: sequence_synthetic.yaml
COOC_SPEC = "sequence_synthetic_match.yaml"
WITH_COOC = {"target_attention_cooc", "lightgbm_builtin_cooc"}
#: the built-in ``match`` kind on the raw columns (hit, count, recency, history length): what the
#: spec can now say instead of hand-made features; added by the ``*_match`` configurations (not
#: ``lightgbm_match``, whose features are hand-made)
BUILTIN_MATCH = {"name": "history_match", "kind": "match", "candidate": "item_id", "history": "history", "max_len": 30}
WITH_BUILTIN_MATCH = {"target_attention_match", "lightgbm_builtin_match"}


MATCH_FEATURES = ["history_len", "repeat_count", "cooc_sim_mean", "cooc_sim_max"]


def cooccurrence_similarity(train: EncodedTable, table_size: int) -> np.ndarray:
    """(V, V) cosine similarity of the items' co-occurrence rows over the train histories.

    Counts how often two items sit in the same history (train split only), zeroes the diagonal
    (an item's count with itself says nothing about its neighbours) and L2-normalises each row.
    Ids 0 (padding) and 1 (out of vocabulary) are no items.
    """
    seq = train.sequences["history"].numpy()
    hot = np.zeros((len(seq), table_size), dtype=np.float32)
    np.add.at(hot, (np.repeat(np.arange(len(seq)), seq.shape[1]), seq.ravel()), 1.0)
    hot[:, :2] = 0
    co = hot.T @ hot
    np.fill_diagonal(co, 0.0)
    unit = co / np.maximum(np.linalg.norm(co, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def with_match_features(table: EncodedTable, item_col: int, sim: np.ndarray, features: tuple[str, ...]) -> EncodedTable:
    """``table`` with ``features`` (of :data:`MATCH_FEATURES`) appended to its numeric matrix:
    (N, M) → (N, M + len(features))."""
    seq = table.sequences["history"].numpy()
    cand = table.categorical[:, item_col].numpy()
    real = seq > 1
    length = real.sum(1)
    pair = np.where(real, sim[cand[:, None], seq], 0.0)
    values = {
        "history_len": length,
        "repeat_count": ((seq == cand[:, None]) & real & (cand[:, None] > 1)).sum(1),
        "cooc_sim_mean": pair.sum(1) / np.maximum(length, 1),
        "cooc_sim_max": np.where(real, pair, -1.0).max(1, initial=-1.0),
    }
    extra = torch.from_numpy(np.stack([values[f] for f in features], 1).astype(np.float32))
    return replace(table, numeric=torch.cat([table.numeric, extra], 1))


def lightgbm_plain(prep: Prepared, seed: int, runs: Path) -> dict[str, Any]:
    columns = TreeColumns.of(prep.preprocessor.layout)
    return fit_lightgbm_per_task(prep.spec.tasks, prep.train, prep.valid, prep.test, columns, LightGBMParams(num_threads=1), seed)  # type: ignore[arg-type]


def lightgbm_match(prep: Prepared, seed: int, runs: Path, features: tuple[str, ...] = tuple(MATCH_FEATURES)) -> dict[str, Any]:
    """LightGBM per task on the project's tree columns plus ``features`` (of :data:`MATCH_FEATURES`)."""
    layout = prep.preprocessor.layout
    item_col = [f for f, _ in layout.categorical].index("item_id")
    sim = cooccurrence_similarity(prep.train, layout.tables["item_ids"][0])  # type: ignore[arg-type]
    splits = [with_match_features(t, item_col, sim, features) for t in (prep.train, prep.valid, prep.test)]  # type: ignore[arg-type]
    plain = TreeColumns.of(layout)
    columns = TreeColumns(plain.names + list(features), plain.categorical)
    return fit_lightgbm_per_task(prep.spec.tasks, *splits, columns, LightGBMParams(num_threads=1), seed)


def single_task(prep: Prepared, seed: int, runs: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {"val": {}, "test": {}}
    rates, params = [], 0
    for col in range(len(prep.spec.tasks)):
        m = fit_single_task(prep, col, seed, runs).metrics
        for split in ("val", "test"):
            merged[split].update(m[split])
        rates.append(m["train_rows_per_sec"])
        params += m["params"]
    merged["train_rows_per_sec"] = statistics.mean(rates)
    merged["params"] = params  # both networks together
    return merged


#: baseline configuration → fit on the prepared splits (DIN-pooled spec) for one seed
BASELINES: dict[str, Callable[[Prepared, int, Path], dict[str, Any]]] = {
    "lightgbm": lightgbm_plain, "lightgbm_match": lightgbm_match, "single_task": single_task,
    # ablation: the exact-repeat count and history length only, no similarity to the history
    "lightgbm_repeat": partial(lightgbm_match, features=("history_len", "repeat_count")),
    # the project's LightGBM on the spec with the built-in match feature (its columns are numbers there)
    "lightgbm_builtin_match": lightgbm_plain,
    # the same on the spec with built-in match + cooccurrence
    "lightgbm_builtin_cooc": lightgbm_plain,
}


def write_pipeline(tmp: Path, config: str, base_spec: dict, data: Path, args: argparse.Namespace) -> Path:
    pooling, model = CONFIGS.get(config, CONFIGS["target_attention"])
    if config in WITH_COOC:
        base_spec = yaml.safe_load((ROOT / "feature_specs" / args.cooc_spec).read_text())
    if config == "dtrn_interest":
        model = {"name": "dtrn", "params": {**model["params"], "interest": args.interest}}
    spec = dict(base_spec)
    spec["features"] = [
        {**{k: v for k, v in f.items() if k not in ("pooling", "attention")}, **POOLINGS[pooling]} if f["name"] == "history" else f
        for f in base_spec["features"]
    ] + ([BUILTIN_MATCH] if config in WITH_BUILTIN_MATCH else [])
    spec_file = tmp / f"spec_{config}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    pipeline = {
        "name": f"din_{config}", "spec": str(spec_file),
        "data": {"kind": "files", "train": str(data), "valid_fraction": 0.15, "test_fraction": 0.15},
        "model": model,
        **({"encoder": args.encoder} if args.encoder else {}),
        "trainer": {"max_epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
                    "monitor": "val/click/auc", "progress_bar": False},
        "runs_dir": str(tmp / "runs"),
    }
    pipe_file = tmp / f"pipeline_{config}.yaml"
    pipe_file.write_text(yaml.safe_dump(pipeline))
    return pipe_file


def _stat(vals: list[float]) -> str:
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.4f} ± {sd:.4f}"


def report(results: dict[str, list[dict]], seeds: list[int]) -> None:
    cols = ["click/auc", "click/gauc", "like/auc", "like/gauc"]
    print("\n| configuration | " + " | ".join(f"test {c}" for c in cols) + " | train rows/s | params | s per seed |")
    print("|---|" + "---|" * (len(cols) + 3))
    for config, runs in results.items():
        cells = [_stat([r["test"][c] for r in runs]) for c in cols]
        rate = f"{statistics.mean(r['train_rows_per_sec'] for r in runs):,.0f}" if "train_rows_per_sec" in runs[0] else "–"
        params = f"{runs[0]['params']:,}" if "params" in runs[0] else "–"
        print(f"| {config} | " + " | ".join(cells) + f" | {rate} | {params} | {statistics.mean(r['seconds'] for r in runs):.1f} |")
    ref = "target_attention"
    if ref in results:
        print(f"\nper seed (test AUC click / like) and paired difference against {ref}, mean ± std over seeds:")
        for config, runs in results.items():
            per_seed = ", ".join(f"{s}: {r['test']['click/auc']:.4f} / {r['test']['like/auc']:.4f}" for s, r in zip(seeds, runs))
            line = f"  {config}: {per_seed}"
            if config != ref:
                for task in ("click", "like"):
                    diff = [r["test"][f"{task}/auc"] - b["test"][f"{task}/auc"] for r, b in zip(runs, results[ref])]
                    line += f"; Δ{task} {_stat(diff)}"
            print(line)


#: test metrics of the --collect table
COLLECT_METRICS = ["click/auc", "click/gauc", "like/auc", "like/gauc"]


def collect(runs: Path, arms: list[str], against: str) -> tuple[list[list[str]], dict[str, list[dict]]]:
    """Rows of the pipeline-file table from ``runs/<arm>/seed<k>/<run folder>/metrics.json`` (the
    earliest run folder per seed), and the metrics per arm in seed order."""
    found: dict[str, list[dict]] = {}
    for arm in arms:
        for seed_dir in sorted((runs / arm).glob("seed*"), key=lambda d: int(d.name[4:])):
            done = sorted(seed_dir.glob("*/metrics.json"))
            if done:
                found.setdefault(arm, []).append({"seed": int(seed_dir.name[4:]), **json.loads(done[0].read_text())})
    base = {m["seed"]: m for m in found.get(against, [])}
    rows = []
    for arm, fits in found.items():
        cells = [_stat([m["test"][c] for m in fits]) for c in COLLECT_METRICS]
        paired = [statistics.mean(m["test"][f"{t}/auc"] - base[m["seed"]]["test"][f"{t}/auc"] for t in ("click", "like"))
                  for m in fits if m["seed"] in base]
        delta = "–"
        if arm != against and paired:
            delta = f"{statistics.mean(paired):+.4f} ± {statistics.stdev(paired) if len(paired) > 1 else 0.0:.4f}"
        rate = f"{statistics.mean(m['train_rows_per_sec'] for m in fits):,.0f}"
        secs = f"{statistics.mean(m['fit_seconds'] for m in fits):.0f}"
        rows.append([arm, str(len(fits)), *cells, delta, rate, secs, f"{fits[0]['params']:,}"])
    return rows, found


def main_collect(args: argparse.Namespace) -> None:
    rows, found = collect(Path(args.collect), args.arms, args.against)
    columns = ["pipeline arm", "seeds", *[f"test {c}" for c in COLLECT_METRICS],
               f"Δ mean AUC vs {args.against}, same seed", "train rows/s", "fit s", "params"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    for arm, fits in found.items():
        print(f"  {arm}: " + ", ".join(f"seed {m['seed']}: click {m['test']['click/auc']:.4f} like {m['test']['like/auc']:.4f} "
                                       f"(best epoch {m['best_epoch']})" for m in fits))
    if args.json:
        Path(args.json).write_text(json.dumps({"columns": columns, "rows": rows}, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--collect", help="read CLI run folders RUNS/<arm>/seed<k>/ into a table (no fitting)")
    ap.add_argument("--arms", nargs="+", default=["mmoe", "rmtl"], help="--collect: the pipeline arms")
    ap.add_argument("--against", default="mmoe", help="--collect: the plain arm the others are paired with")
    ap.add_argument("--json", help="--collect: also write the columns and rows here")
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--configs", "--poolings", nargs="+", default=list(POOLINGS), choices=[*CONFIGS, *BASELINES])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--patience", type=int, default=3, help="epochs without a better val click AUC before stopping")
    ap.add_argument("--encoder", type=json.loads, default=None,
                    help='JSON: the networks\' encoder section, e.g. {"gbdt_leaves": {"margin": true, ...}}')
    ap.add_argument("--cooc-spec", default=COOC_SPEC,
                    help="the *_cooc configurations' spec, a file of feature_specs/ (e.g. a variant with kernel outputs)")
    ap.add_argument("--interest", type=json.loads, default={}, help="JSON: dtrn_interest's interest params")
    args = ap.parse_args()
    if args.collect:
        return main_collect(args)
    warnings.filterwarnings("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="din_bench_"))
    data = tmp / "data.parquet"
    df = generate_sequences(SequenceDataConfig(rows=args.rows, seed=0))
    df.write_parquet(data)
    base_spec = yaml.safe_load((ROOT / "feature_specs" / "sequence_synthetic.yaml").read_text())
    test = load_splits(load_pipeline(write_pipeline(tmp, "target_attention", base_spec, data, args))[0].data).test
    # the ceiling: AUC of the true probabilities the labels were drawn from (whole table)
    for task in ("click", "like"):
        oracle = binary_auroc(torch.from_numpy(df[f"p_{task}"].to_numpy()), torch.from_numpy(df[task].to_numpy()))
        on_test = binary_auroc(torch.from_numpy(test[f"p_{task}"].to_numpy()), torch.from_numpy(test[task].to_numpy()))
        print(f"oracle {task} AUC {float(oracle):.4f} (test split {float(on_test):.4f})")
    results: dict[str, list[dict]] = {}
    for config in args.configs:
        pipe_file = write_pipeline(tmp, config, base_spec, data, args)
        if config in BASELINES:
            cfg, loaded = load_pipeline(pipe_file)
            prep = prepare(cfg, loaded)  # the split and preprocessing every fit below uses
            dropped = TreeColumns.of(prep.preprocessor.layout).dropped
            if config.startswith("lightgbm") and dropped:
                print(f"{config}: the project's tree columns leave out {', '.join(dropped)} (no tree column for lists)")
        for seed in args.seeds:
            started = time.perf_counter()
            if config in BASELINES:
                m = BASELINES[config](prep, seed, tmp / "runs" / config)
            else:
                cfg, loaded = load_pipeline(pipe_file, [f"trainer.seed={seed}"])
                m = fit(cfg, loaded).metrics
            m["seconds"] = time.perf_counter() - started
            results.setdefault(config, []).append(m)
            rounds = f"rounds {m['best_iteration']}" if "best_iteration" in m else f"best epoch {m.get('best_epoch')}"
            val = {f"val {k}": round(v, 4) for k, v in m.get("val", {}).items() if k.endswith("/auc")}
            print(config, seed, {k: round(v, 4) for k, v in m["test"].items() if "auc" in k}, val, f"{m['seconds']:.1f} s", rounds,
                  flush=True)
    report(results, args.seeds)


if __name__ == "__main__":
    main()
