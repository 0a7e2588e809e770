"""Side by side with torch-rechub 0.9.0: MMoE on census-income, same inputs, alternating runs.

    python benchmarks/rechub_compare.py --rounds 2 --threads 1
    python benchmarks/rechub_compare.py --rounds 2 --threads 1 --epochs 4 \
        --ours-variant eager: --ours-variant 'compiled:trainer.compile=true'
    python benchmarks/rechub_compare.py --rounds 2 --threads 1 --epochs 4 --ours-variant eager: \
        --ours-variant 'compiled-warm:trainer.compile=true' --cache compiled-warm=warm

Both sides train the plain MMoE (:data:`PLAIN`: the pipeline's model without its GBDT leaves, PLE
numerics and schedule). The parent process fits our preprocessing once (``recsys_mtl.data.census.read_census`` with the
pipeline's split seed, the features of ``feature_specs/census_income.yaml``) and writes the
label-encoded columns to a temporary ``.npz``. Each run is then a fresh subprocess, so peak RSS
is per run: ours under this interpreter (the full pipeline: read, fit, transform, Lightning fit,
test at the best validation checkpoint), theirs under ``--rechub-python`` (a separate virtual
environment with ``torch-rechub==0.9.0``; their ``MMOE`` + ``MTLTrainer`` + ``DataGenerator``
used as published, fed the same encoded integers and standardized numerics). Runs alternate
ours, theirs, ours, theirs, so both see the same machine load.

Matched: 8 experts with hidden [64], towers [32], embedding dim 4 per categorical column,
numeric columns as 1-d inputs, Adam lr 0.002 without weight decay, batch 1024, at most 15
epochs, patience 3. Not matchable without editing their code: their MLPs put BatchNorm after
every linear layer; their early stopping watches task 0's AUC (ours the mean validation AUC).

Timing: train seconds cover batch fetch + forward + backward + optimizer step, no validation.
Both wall and process CPU seconds are reported; ``--threads`` fixes torch's intra-op threads
in both (1 keeps timings stable on a shared machine). ``steady_*`` fields leave the first epoch out
(what a run costs per epoch once started: ``trainer.compile`` compiles in the first epoch's first
steps); ``first_epoch_extra_seconds_wall`` is the first epoch's wall time minus the mean of the
others (the compilation, for a compiled run); ``train_seconds_wall`` sums every epoch and
``fit_seconds_wall`` is our whole ``trainer.fit`` (validation included), both with compilation.
Inductor's cache (``TORCHINDUCTOR_CACHE_DIR``) per variant, ``--cache LABEL=STATE``:
``empty`` (the default) a fresh empty folder per run, a first torch.compile on a machine (it also
builds inductor's vector-ISA probe programs); ``new-model`` a fresh folder holding only those probes
(a machine that compiled something before, never this model: the cold compile of the model);
``warm`` one folder for all rounds, primed by an untimed run of the same variant before round 0
(this model and batch size compiled before, in another process: a second fit, a repeated trial).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "census_mmoe.yaml"
#: census_mmoe.yaml as it was when this comparison was set up (commit 6956b65): the plain MMoE peer of
#: theirs. The pipeline has since become the GBDT-leaf recipe (d8 spec, PLE numerics, cosine, 3 epochs)
PLAIN = [
    "spec=../feature_specs/census_income.yaml", "encoder={}",
    "model.params={num_experts: 8, expert_hidden: [64], tower_hidden: [32]}",
    "trainer.max_epochs=15", "trainer.lr_schedule=constant", "trainer.warmup_fraction=0",
]


def peak_rss_mib() -> float:
    """Peak RSS of this process image: VmHWM, which starts afresh at exec (``ru_maxrss`` of a
    subprocess would carry the parent's high-water mark over the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- shared inputs
def write_inputs(pipeline: Path, out: Path) -> dict[str, Any]:
    """Encode the census splits with our fitted Preprocessor; save columns + layout to ``out``."""
    import numpy as np

    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train.fit import prepare

    cfg, spec = load_pipeline(pipeline, PLAIN)
    prep = prepare(cfg, spec)
    arrays: dict[str, Any] = {}
    for split in ("train", "valid", "test"):
        table = getattr(prep, split)
        arrays[f"{split}_cat"] = table.categorical.numpy()
        arrays[f"{split}_num"] = table.numeric.numpy()
        arrays[f"{split}_y"] = table.labels.numpy()
    np.savez(out / "census.npz", **arrays)
    lay = prep.preprocessor.layout
    meta = {
        "tables": [lay.tables[t] for _, t in lay.categorical],
        "num_numeric": len(lay.numeric) + len(lay.indicators),
        "tasks": [t.name for t in spec.tasks],
        "rows": {s: len(getattr(prep, s)) for s in ("train", "valid", "test")},
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


# --------------------------------------------------------------------------- ours (child)
def run_ours(pipeline: Path, overrides: list[str], threads: int) -> dict[str, Any]:
    import torch

    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train.fit import build_module, make_trainer, prepare

    torch.set_num_threads(threads)

    from train_clock import TrainClock  # benchmarks/ is the script's folder, first on sys.path

    with tempfile.TemporaryDirectory() as tmp:
        cfg, spec = load_pipeline(pipeline, [*PLAIN, *overrides, f"runs_dir={tmp}", "trainer.progress_bar=false"])
        prep = prepare(cfg, spec)
        module = build_module(prep)
        from recsys_mtl.train.datamodule import TableDataModule

        t = cfg.trainer
        dm = TableDataModule(prep.train, prep.valid, prep.test, t.batch_size, t.eval_batch_size, t.seed)
        clock = TrainClock()
        trainer, checkpoint, _ = make_trainer(cfg, Path(tmp), [clock])
        started = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        fit_seconds = time.perf_counter() - started
        test = trainer.test(module, datamodule=dm, ckpt_path=checkpoint.best_model_path, verbose=False)[0]
    auc = {name: float(test[f"test/{name}/auc"]) for name in [t.name for t in spec.tasks]}
    return {**_summary("recsys_mtl", clock.rows, clock.wall, clock.cpu, auc, threads), "fit_seconds_wall": round(fit_seconds, 2)}


# --------------------------------------------------------------------------- theirs (child)
def run_rechub(data: Path, threads: int, epochs: int, batch_size: int, lr: float, patience: int) -> dict[str, Any]:
    """Runs under the torch-rechub venv: only numpy, torch and torch_rechub are importable there."""
    import numpy as np
    import torch
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    torch.set_num_threads(threads)
    torch.manual_seed(42)
    meta = json.loads((data / "meta.json").read_text())
    arrays = np.load(data / "census.npz")

    def columns(split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        cat, num = arrays[f"{split}_cat"], arrays[f"{split}_num"]
        x = {f"c{i}": cat[:, i] for i in range(cat.shape[1])}
        x.update({f"n{j}": num[:, j] for j in range(num.shape[1])})
        return x, arrays[f"{split}_y"]

    features = [SparseFeature(f"c{i}", vocab_size=size, embed_dim=dim) for i, (size, dim) in enumerate(meta["tables"])]
    features += [DenseFeature(f"n{j}") for j in range(meta["num_numeric"])]
    tasks = ["classification"] * len(meta["tasks"])
    model = MMOE(features, tasks, n_expert=8, expert_params={"dims": [64]}, tower_params_list=[{"dims": [32]}] * len(tasks))
    x_tr, y_tr = columns("train")
    x_va, y_va = columns("valid")
    x_te, y_te = columns("test")
    train_dl, val_dl, test_dl = DataGenerator(x_tr, y_tr).generate_dataloader(x_va, y_va, x_te, y_te, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MTLTrainer(
            model, task_types=tasks, optimizer_params={"lr": lr, "weight_decay": 0.0},
            n_epoch=epochs, earlystop_patience=patience, device="cpu", model_path=tmp,
        )
        wall: list[float] = []
        cpu: list[float] = []
        inner = trainer.train_one_epoch

        def timed_epoch(loader: Any) -> Any:  # time their training epoch as published, nothing else
            w, c = time.perf_counter(), time.process_time()
            out = inner(loader)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
            return out

        trainer.train_one_epoch = timed_epoch  # type: ignore[method-assign]
        trainer.fit(train_dl, val_dl)
        scores = trainer.evaluate(trainer.model, test_dl)
    auc = {name: float(s) for name, s in zip(meta["tasks"], scores)}
    return _summary("torch-rechub 0.9.0", len(y_tr) * len(wall), wall, cpu, auc, threads)


def _summary(system: str, rows: int, wall: list[float], cpu: list[float], auc: dict[str, float], threads: int) -> dict[str, Any]:
    per_epoch = rows / len(wall)  # every epoch sees the whole train split (no limit_train_batches here)
    later_wall, later_cpu = wall[1:] or wall, cpu[1:] or cpu  # one epoch only: nothing to leave out
    return {
        "steady_rows_per_sec_wall": round(per_epoch * len(later_wall) / sum(later_wall), 1),
        "steady_rows_per_cpu_sec": round(per_epoch * len(later_cpu) / sum(later_cpu), 1),
        "first_epoch_extra_seconds_wall": round(wall[0] - sum(later_wall) / len(later_wall), 2),
        "train_seconds_wall": round(sum(wall), 2),
        "system": system,
        "torch_threads": threads,
        "epochs": len(wall),
        "train_rows": rows,
        "train_rows_per_sec_wall": round(rows / sum(wall), 1),
        "train_rows_per_cpu_sec": round(rows / sum(cpu), 1),
        "mean_epoch_seconds_wall": round(sum(wall) / len(wall), 3),
        "mean_epoch_seconds_cpu": round(sum(cpu) / len(cpu), 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "test_auc": {k: round(v, 5) for k, v in auc.items()},
    }


# --------------------------------------------------------------------------- parent
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pipeline", type=Path, default=PIPELINE)
    ap.add_argument("--rechub-python", default="/work/rechub-venv/bin/python")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs for both")
    ap.add_argument("--ours-set", action="append", default=[], metavar="KEY=VALUE",
                    help="pipeline override for our side only, e.g. trainer.precision=bf16-mixed")
    ap.add_argument("--ours-variant", action="append", default=[], metavar="LABEL:KEY=VALUE;KEY=VALUE",
                    help="another configuration of our side, run in every round before theirs with --ours-set plus these "
                         "overrides (';'-separated; none after ':' for the plain one), e.g. 'compiled:trainer.compile=true'")
    ap.add_argument("--cache", action="append", default=[], metavar="LABEL=STATE",
                    help=f"inductor cache of a variant: {', '.join(CACHE_STATES)} (default empty), e.g. 'compiled-warm=warm'")
    ap.add_argument("--child", choices=["ours", "rechub"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child == "rechub":
        hp = json.loads(os.environ["RECHUB_COMPARE_HP"])
        print(json.dumps(run_rechub(args.data, args.threads, **hp)))
        return
    overrides = [f"trainer.max_epochs={args.epochs}"] if args.epochs else []
    if args.child == "ours":
        print(json.dumps(run_ours(args.pipeline, overrides + args.ours_set, args.threads)))
        return

    from recsys_mtl.spec import load_pipeline

    cfg, _ = load_pipeline(args.pipeline, [*PLAIN, *overrides])
    t = cfg.trainer
    hp = {"epochs": t.max_epochs, "batch_size": t.batch_size, "lr": t.lr, "patience": t.patience}
    env = {**os.environ, "RECHUB_COMPARE_HP": json.dumps(hp), "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        meta = write_inputs(args.pipeline, Path(tmp))
        variants = _variants(args.ours_variant)
        caches = _caches(args.cache, variants)
        print(json.dumps({"rows": meta["rows"], "hyperparameters": hp, "threads": args.threads,
                          "ours_overrides": args.ours_set, "variants": variants, "inductor_cache": caches}), flush=True)
        script = str(Path(__file__).resolve())
        base = ["--pipeline", str(args.pipeline), "--threads", str(args.threads), "--data", tmp]
        if args.epochs:
            base += ["--epochs", str(args.epochs)]

        def child_run(child: str, python: str, sets: list[str], cache_dir: Path) -> dict[str, Any]:
            extra = [f"--ours-set={o}" for o in [*args.ours_set, *sets]] if child == "ours" else []
            proc = subprocess.run([python, script, "--child", child, *base, *extra], capture_output=True, text=True, cwd=ROOT,
                                  env={**env, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir)})
            if proc.returncode != 0:
                sys.exit(f"{child} run failed:\n{proc.stderr[-4000:]}")
            return json.loads(proc.stdout.strip().splitlines()[-1])

        probes = Path(tmp) / "inductor-probes"
        if any(state != "empty" for state in caches.values()):
            build_isa_probes(probes, env)
        for label, state in caches.items():
            if state == "warm":  # the untimed first fit whose graphs the timed ones find cached
                shutil.copytree(probes, Path(tmp) / f"inductor-warm-{label}")
                child_run("ours", sys.executable, variants[label], Path(tmp) / f"inductor-warm-{label}")
                print(json.dumps({"primed": label}), flush=True)
        for r in range(args.rounds):
            runs = [("ours", sys.executable, label, sets) for label, sets in variants.items()] + [("rechub", args.rechub_python, "", [])]
            for child, python, label, sets in runs:
                state = caches.get(label, "empty")
                cache_dir = Path(tmp) / (f"inductor-warm-{label}" if state == "warm" else f"inductor-{r}-{label}")
                if state == "new-model":
                    shutil.copytree(probes, cache_dir)
                res = child_run(child, python, sets, cache_dir)
                res["round"] = r
                if child == "ours":
                    res["variant"] = label
                    res["inductor_cache"] = state
                results.append(res)
                print(json.dumps(res), flush=True)
    print(json.dumps({"ratios": ratios(results)}, indent=1))


def _variants(specs: list[str]) -> dict[str, list[str]]:
    """``--ours-variant`` values as {label: overrides}; none given: one plain variant, "ours"."""
    out: dict[str, list[str]] = {}
    for spec in specs or ["ours:"]:
        label, _, sets = spec.partition(":")
        if not label or label in out:
            sys.exit(f"--ours-variant {spec!r}: needs a label of its own before ':'")
        out[label] = [s for s in sets.split(";") if s]
    return out


#: what ``--cache`` accepts (see the module docstring)
CACHE_STATES = ("empty", "new-model", "warm")


def _caches(specs: list[str], variants: dict[str, list[str]]) -> dict[str, str]:
    """``--cache`` values as {variant label: state}, every variant present (default ``empty``)."""
    out = dict.fromkeys(variants, "empty")
    for spec in specs:
        label, _, state = spec.partition("=")
        if label not in variants or state not in CACHE_STATES:
            sys.exit(f"--cache {spec!r}: needs a variant label ({', '.join(variants)}) = one of {', '.join(CACHE_STATES)}")
        out[label] = state
    return out


def build_isa_probes(cache_dir: Path, env: dict[str, str]) -> None:
    """Fill ``cache_dir`` with inductor's vector-ISA probe programs only (built by the first CPU
    compile on a machine, whatever the model)."""
    code = "from torch._inductor.cpu_vec_isa import valid_vec_isa_list; print(valid_vec_isa_list())"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env={**env, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir)})


def ratios(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per variant of ours, ours / theirs per round (same round = adjacent runs, same load), then the mean."""
    out: dict[str, dict[str, float]] = {}
    rounds = sorted({r["round"] for r in results})
    for label in dict.fromkeys(x["variant"] for x in results if x["system"] == "recsys_mtl"):
        out[label] = {}
        for key in ("train_rows_per_sec_wall", "train_rows_per_cpu_sec", "steady_rows_per_sec_wall", "steady_rows_per_cpu_sec"):
            per = []
            for r in rounds:
                ours = next(x for x in results if x["round"] == r and x.get("variant") == label)
                theirs = next(x for x in results if x["round"] == r and x["system"] != "recsys_mtl")
                per.append(ours[key] / theirs[key])
            out[label][key] = round(sum(per) / len(per), 2)
    return out


if __name__ == "__main__":
    main()
