"""``recsys-mtl``: fit, validate and generate from the command line.

Errors in the user's input print as one line naming the file / column / field at fault; add
``--debug`` for the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from recsys_mtl.errors import DataError, RecsysMTLError, SpecError

if TYPE_CHECKING:
    from recsys_mtl.spec import FeatureSpec, PipelineConfig
    from recsys_mtl.train.ray_fit import RayOptions


def _load_checked(args: argparse.Namespace) -> "tuple[PipelineConfig, FeatureSpec]":
    """The pipeline and its spec, with trainer, model and balancing settings checked (no data read)."""
    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train.pipeline_checks import check_pipeline

    cfg, spec = load_pipeline(args.pipeline, args.set)
    try:
        check_pipeline(cfg, spec)
    except SpecError as exc:
        raise type(exc)(f"{args.pipeline}: {exc}") from None
    return cfg, spec

if TYPE_CHECKING:
    from recsys_mtl.baselines.config import BaselinesConfig
    from recsys_mtl.spec.pipeline import PipelineConfig


def _fit(args: argparse.Namespace) -> int:
    from recsys_mtl.train.fit import fit

    cfg, spec = _load_checked(args)
    if args.runs_dir:
        cfg = cfg.model_copy(update={"runs_dir": Path(args.runs_dir)})
    wanted = _baselines_wanted(args, cfg)
    callbacks = []
    if args.data_maps or args.lookahead:
        from recsys_mtl.grouping import DataMaps, LookaheadAffinity

        callbacks = ([DataMaps()] if args.data_maps else []) + ([LookaheadAffinity()] if args.lookahead else [])
    resume, init_from = (Path(args.resume) if args.resume else None), (Path(args.init_from) if args.init_from else None)
    if args.engine == "ray":
        from recsys_mtl.train.ray_fit import format_restart, ray_fit

        result = ray_fit(cfg, spec, _ray_options(args), resume=resume, init_from=init_from, extra_callbacks=callbacks)
        for record in result.restarts:
            print(format_restart(record))
    else:
        result = fit(cfg, spec, resume=resume, init_from=init_from, extra_callbacks=callbacks)
    m = result.metrics
    print(f"run folder: {result.run_dir}")
    for split in ("val", "test"):
        shown = {k: v for k, v in m[split].items() if k.endswith(("/auc", "/rmse", "/accuracy"))}
        print(f"{split}: " + "  ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    print(f"best epoch {m['best_epoch']}, train {m['train_rows_per_sec']:.0f} rows/s, peak RSS {m['peak_rss_mib']:.0f} MiB")
    _fit_baselines(wanted, result.run_dir)
    return 0


def _ray_options(args: argparse.Namespace) -> "RayOptions":
    from recsys_mtl.train.ray_fit import RayOptions

    return RayOptions(workers=args.workers, address=args.address, cpus_per_worker=args.cpus_per_worker,
                      use_gpu=args.gpus, max_failures=args.max_failures)


def _engine_args(sp: argparse.ArgumentParser, what: str) -> None:
    """``--engine ray`` and its settings, shared by fit and tune."""
    sp.add_argument("--engine", choices=["local", "ray"], default="local",
                    help=f"ray: {what} on Ray Train workers (Lightning DDP through Ray; recsys-mtl[ray])")
    sp.add_argument("--workers", type=int, default=2, help="--engine ray: training workers (DDP ranks)")
    sp.add_argument("--address", help="--engine ray: an existing Ray cluster (default: start a local one)")
    sp.add_argument("--cpus-per-worker", type=float, default=1.0, help="--engine ray: Ray CPUs each worker holds")
    sp.add_argument("--gpus", action="store_true", help="--engine ray: one GPU per worker (NCCL)")
    sp.add_argument("--max-failures", type=int, default=2, help="--engine ray: worker failures recovered from the last checkpoint")


def _baselines_wanted(args: argparse.Namespace, cfg: PipelineConfig) -> BaselinesConfig | None:
    """The opt-in baselines step of fit / run (``--baselines`` or ``baselines.enabled``), checked before training."""
    from recsys_mtl.baselines import baselines_config

    bcfg = baselines_config(cfg.baselines, args.pipeline)
    return bcfg if args.baselines or bcfg.enabled else None


def _fit_baselines(bcfg: BaselinesConfig | None, run_dir: Path) -> None:
    if bcfg is not None:
        from recsys_mtl.baselines import baselines_for_run

        report = baselines_for_run(run_dir, bcfg)
        print(f"baselines: {report.out_dir}\n{report.table}")


def _baseline(args: argparse.Namespace) -> int:
    from recsys_mtl.baselines import baselines_config, run_baselines
    from recsys_mtl.train.fit import new_run_dir

    cfg, spec = _load_checked(args)  # every setting checked before the baselines folder exists
    if args.runs_dir:
        cfg = cfg.model_copy(update={"runs_dir": Path(args.runs_dir)})
    bcfg = baselines_config(cfg.baselines, args.pipeline)
    update = {"seeds": args.seeds} if args.seeds else {}
    update.update({k: False for k in ("lightgbm", "single_task") if getattr(args, f"no_{k}")})
    if args.rmtgb:
        update["rmtgb"] = True
    bcfg = bcfg.model_copy(update=update)
    report = run_baselines(cfg, spec, bcfg, new_run_dir(cfg.runs_dir, f"{cfg.name}-baselines"))
    print(f"baselines folder: {report.out_dir}")
    print(report.table)
    return 0


def _validate(args: argparse.Namespace) -> int:
    cfg, spec = _load_checked(args)
    if cfg.tune.get("space"):  # the search space, enqueued trials and objective, as `tune` checks them
        from recsys_mtl.tune import plan_study

        plan_study(args.pipeline, args.set)
    print(f"{args.pipeline}: pipeline, spec {cfg.spec}, trainer, model and balancing settings are valid")
    if args.data:
        from recsys_mtl.data.sources import data_source

        sizes = data_source(cfg.data).check(spec)
        print(f"data: {sizes} rows; every spec column present")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from recsys_mtl.data.synthetic import SyntheticConfig, write_parquet

    if args.drift:  # time split with drift and long-tail ids (recsys_mtl.data.synthetic_drift)
        from recsys_mtl.data import synthetic_drift

        try:
            drift = synthetic_drift.DriftConfig(rows=args.rows, seed=args.seed)
        except ValueError as exc:
            raise RecsysMTLError(f"generate: {exc}") from None
        print(synthetic_drift.write_parquet(drift, Path(args.out)))
        return 0
    try:
        cfg = SyntheticConfig(rows=args.rows, num_tasks=args.tasks, task_correlation=args.correlation, seed=args.seed)
    except ValueError as exc:
        raise RecsysMTLError(f"generate: {exc}") from None
    print(write_parquet(cfg, Path(args.out)))
    return 0


def _export(args: argparse.Namespace) -> int:
    from recsys_mtl.export import export_run

    variants = tuple(name for name, on in (("int8", args.int8), ("fp16", args.fp16)) if on)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks is not None else None
    result = export_run(args.run_dir, args.out, variants=variants, parity_rows=args.parity_rows, tasks=tasks)
    m = result.metadata
    print(f"export folder: {result.out_dir}")
    if "task_subset" in m:
        full, sub = m["task_subset"]["full"], m["task_subset"]["subset"]
        print(f"task-sparse graph for {', '.join(m['task_subset']['tasks'])}: " + "  ".join(
            f"{k} {sub[k]}/{full[k]}" for k in ("nodes", "initializers", "parameters")) + " (subset/full, model part)")
    print(f"parity on {m['parity']['rows']} held-out rows: max abs difference {m['parity']['max_abs_diff']:.3g}")
    for name, info in m["variants"].items():
        print(f"{name}: change vs fp32 " + "  ".join(f"{t}/{k}={v:+.5f}" for t, ms in info["change"].items() for k, v in ms.items()))
    return 0


def _score(args: argparse.Namespace) -> int:
    from serving.batch_inputs import BatchInputError
    from serving.batch_score import BatchScoreError, score
    from serving.metadata import ExportLoadError

    keep = [c.strip() for c in args.keep.split(",") if c.strip()] if args.keep else []
    tasks = args.tasks.split(",") if args.tasks is not None else None
    try:
        if args.engine == "ray":
            try:
                from serving.ray_score import score_ray
            except ImportError:
                raise DataError("score --engine ray needs Ray: pip install 'recsys-mtl[ray]'") from None
            result = score_ray(args.export_dir, args.inputs, args.out, keep=keep, tasks=tasks, workers=args.workers,
                               batch_rows=args.batch_rows, threads=args.threads or 1, cpus_per_worker=args.cpus_per_worker,
                               address=args.address, overwrite=args.overwrite)
        else:
            result = score(args.export_dir, args.inputs, args.out, keep=keep, tasks=tasks, workers=args.workers,
                           batch_rows=args.batch_rows, variant=args.variant, provider=args.provider, threads=args.threads,
                           overwrite=args.overwrite, progress=not args.quiet)
    except (BatchScoreError, BatchInputError, ExportLoadError) as exc:
        raise DataError(str(exc)) from None
    print(f"scored {result.rows:,} rows of {result.files} file(s) in {result.seconds:.1f} s "
          f"({result.rows_per_second:,.0f} rows/s, {result.workers} worker(s)): {result.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import time

    from recsys_mtl.evaluate import evaluate

    out = Path(args.out) if args.out else Path("evaluations") / f"{Path(args.export_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = evaluate(args.export_dir, args.inputs, out, by=args.by, max_slices=args.max_slices)
    r = result.report
    print(f"evaluated {r['rows']:,} rows: " + "  ".join(f"{k}={v:.4f}" for k, v in r["metrics"].items() if v is not None))
    for task, c in r["calibration"].items():
        print(f"{task}: ECE {c['ece']:.4f}, predicted/observed {c['ratio']:.3f}")
    shifted = [k for k, d in r["drift"].items() if (d.get("psi") or 0) > 0.25 or (d.get("oov_share") or 0) > 0.05]
    print(f"drift: {len(shifted)} of {len(r['drift'])} inputs shifted (PSI > 0.25 or OOV > 5%)" + (f": {', '.join(shifted[:8])}" if shifted else ""))
    print(f"report: {result.out_dir / 'evaluate.md'}")
    return 0


def _split(args: argparse.Namespace) -> int:
    from recsys_mtl.evaluate.split import write_split

    out, rows = write_split(args.run_dir, args.split, args.out, overwrite=args.overwrite)
    print(f"wrote the {args.split} split of {args.run_dir} ({rows:,} rows): {out}")
    return 0


def _group(args: argparse.Namespace) -> int:
    from recsys_mtl.grouping.group_run import format_grouping, group_run, plot, write_home_groups

    groupings = group_run(args.run_dir, args.groups)
    for g in groupings:
        print(format_grouping(g))
    png = plot(groupings, Path(args.png) if args.png else Path(args.run_dir) / "grouping.png")
    print(f"plot: {png}")
    if args.write_pipeline:
        out = write_home_groups(Path(args.write_pipeline), groupings[0].groups(), Path(args.out) if args.out else None)
        print(f"pipeline with HoME groups {groupings[0].groups()}: {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from recsys_mtl.diagnostics_report import report

    json_path, png = report(args.run_dir)
    print(f"diagnostics: {json_path}\nplot: {png}")
    if args.importance:
        from recsys_mtl.diagnostics_report import importance_report

        json_path, png, table = importance_report(args.run_dir, args.repeats)
        print(f"{table}\nimportance: {json_path}\nplot: {png}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    import optuna

    from recsys_mtl.tune import plan_study, summary_table, tune

    if not args.debug:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the study prints its own line per trial
    _load_checked(args)  # the base pipeline's settings, before a study is created
    plan = plan_study(
        args.pipeline, args.set, n_trials=args.trials, timeout=args.timeout, storage=args.storage,
        study_name=args.study, runs_dir=Path(args.runs_dir) if args.runs_dir else None,
    )
    print(f"study {plan.study_name}: {plan.tune.n_trials or 'unbounded'} trials, objectives {plan.metrics} {plan.directions}, storage {plan.storage_url.split('@')[-1]}")
    refit_fit = None
    if args.engine == "ray":
        from recsys_mtl.train.ray_fit import RayRefit

        refit_fit = RayRefit(_ray_options(args))
    print(summary_table(tune(plan, do_refit=not args.no_refit, refit_fit=refit_fit)))
    return 0


def _run(args: argparse.Namespace) -> int:
    """The whole journey: tune (when the pipeline has a search space) or fit, then export."""
    from recsys_mtl.export import export_run

    cfg, spec = _load_checked(args)
    wanted = _baselines_wanted(args, cfg)
    if cfg.tune.get("space"):
        from recsys_mtl.tune import plan_study, quiet_optuna, summary_table, tune

        quiet_optuna()
        result = tune(plan_study(args.pipeline, args.set, runs_dir=Path(args.runs_dir) if args.runs_dir else None))
        print(summary_table(result))
        assert result.refit is not None
        run_dir = result.refit.run_dir
    else:
        from recsys_mtl.train.fit import fit

        if args.runs_dir:
            cfg = cfg.model_copy(update={"runs_dir": Path(args.runs_dir)})
        run_dir = fit(cfg, spec).run_dir
        print(f"run folder: {run_dir}")
    _fit_baselines(wanted, run_dir)
    exported = export_run(run_dir, Path(args.exports_dir) / run_dir.name)
    m = exported.metadata
    print(f"export folder: {exported.out_dir} (ONNX on raw columns; parity max abs diff {m['parity']['max_abs_diff']:.3g})")
    print(f"serve it: recsys-mtl-serve {exported.out_dir}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from recsys_mtl.balancing import BALANCERS
    from recsys_mtl.features.registry import kinds
    from recsys_mtl.models import MODELS
    from recsys_mtl.registry import components_markdown

    if args.json:
        print(json.dumps({"models": MODELS.names(), "balancing": BALANCERS.names(),
                          "feature_kinds": [k.name for k in kinds()]}, indent=1))
    elif args.params:  # docs/parameters.md
        from recsys_mtl.parameter_docs import parameters_markdown

        print(parameters_markdown(), end="")
    else:
        print(components_markdown([MODELS, BALANCERS]), end="")
        print("\n## feature kinds (`features[].kind`)\n\n| kind | what it is |\n|---|---|")
        print("\n".join(f"| `{k.name}` | {k.summary} |" for k in kinds()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsys-mtl", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def pipeline_cmd(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("pipeline", help="pipeline YAML file")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a pipeline field, e.g. trainer.max_epochs=3")
        sp.set_defaults(fn=fn)
        return sp

    fit = pipeline_cmd("fit", _fit, "fit preprocessing, train, select on validation, evaluate test once")
    fit.add_argument("--runs-dir", help="where run folders go (default: the pipeline's runs_dir)")
    fit.add_argument("--resume", metavar="RUN_DIR", help="continue this run folder from its last checkpoint")
    fit.add_argument("--init-from", metavar="RUN_DIR", help="start from this run's weights on new data: vocabularies grow, drift.json written")
    fit.add_argument("--baselines", action="store_true", help="then fit the baselines (pipeline's baselines section) into <run>/baselines/")
    fit.add_argument("--data-maps", action="store_true", help="record per-task training data maps (for 'group')")
    fit.add_argument("--lookahead", action="store_true", help="record lookahead inter-task affinity (for 'group'; T extra backward passes every 10 steps)")
    _engine_args(fit, "the fit")
    val = pipeline_cmd("validate", _validate, "check a pipeline and its spec (and with --data, the data)")
    val.add_argument("--data", action="store_true", help="also read the data and check its columns")

    gen = sub.add_parser("generate", help="write synthetic multitask data as Parquet")
    gen.add_argument("out")
    gen.add_argument("--rows", type=int, default=100_000)
    gen.add_argument("--tasks", type=int, default=2)
    gen.add_argument("--correlation", type=float, default=0.5)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--drift", action="store_true", help="drift data instead: periods, long-tail ids, three funnel tasks (feature_specs/synthetic_drift.yaml)")
    gen.set_defaults(fn=_generate)

    lst = sub.add_parser("list", help="registered models and balancing methods, with one-line descriptions")
    lst.add_argument("--params", action="store_true", help="every parameter (models, balancing, rl modes, feature kinds, spec and pipeline sections): "
                     "type, default, meaning (docs/parameters.md)")
    lst.add_argument("--json", action="store_true", help="names only, as JSON")
    lst.set_defaults(fn=_models)

    run = pipeline_cmd("run", _run, "the whole job: tune (if the pipeline has tune.space) or fit, then export to ONNX")
    run.add_argument("--runs-dir", help="where run and study folders go (default: the pipeline's runs_dir)")
    run.add_argument("--exports-dir", default="exports", help="where the export folder goes (default: exports/)")
    run.add_argument("--baselines", action="store_true", help="also fit the baselines into <run>/baselines/")

    base = pipeline_cmd("baseline", _baseline, "LightGBM per task, single-task models and R-MTGB next to the multitask model: Δm, negative transfer")
    base.add_argument("--seeds", type=int, nargs="+", help="seeds of every side (default: baselines.seeds or trainer.seed)")
    base.add_argument("--no-lightgbm", action="store_true", help="skip the LightGBM per task")
    base.add_argument("--no-single-task", action="store_true", help="skip the single-task models")
    base.add_argument("--rmtgb", action="store_true", help="also fit R-MTGB (all tasks binary or all regression)")
    base.add_argument("--runs-dir", help="where the baselines folder goes (default: the pipeline's runs_dir)")

    tun = pipeline_cmd("tune", _tune, "Optuna study over the pipeline's tune.space (train/val only), then refit the best trial")
    tun.add_argument("--trials", type=int, help="finished trials the study should reach, over all workers (default: tune.n_trials)")
    tun.add_argument("--timeout", type=float, help="stop starting trials after this many seconds (this worker)")
    tun.add_argument("--storage", help="RDB URL shared by workers, e.g. postgresql://user@host/db (default: SQLite in the study folder)")
    tun.add_argument("--study", help="study name (default: tune.study_name or the pipeline name)")
    tun.add_argument("--runs-dir", help="where the study folder and the refit run go (default: the pipeline's runs_dir)")
    tun.add_argument("--no-refit", action="store_true", help="only run trials (extra workers); no refit, plots still written")
    _engine_args(tun, "the refit")

    rep = sub.add_parser("report", help="expert diagnostics (sparsity, gate entropy, usage) of a run's best checkpoint")
    rep.add_argument("run_dir", help="run folder written by 'fit'")
    rep.add_argument("--importance", action="store_true", help="also permutation feature importance per task (validation split)")
    rep.add_argument("--repeats", type=int, default=3, help="permutations per feature for --importance")
    rep.set_defaults(fn=_report)

    grp = sub.add_parser("group", help="suggested task groups of a run fitted with --data-maps (STG-MTL; lookahead affinity too if recorded)")
    grp.add_argument("run_dir", help="run folder written by 'fit --data-maps'")
    grp.add_argument("--groups", type=int, help="number of groups (default: best silhouette)")
    grp.add_argument("--png", help="affinity plot (default: RUN/grouping.png)")
    grp.add_argument("--write-pipeline", metavar="PIPELINE", help="write a copy of this pipeline using HoME with the data-map groups")
    grp.add_argument("--out", help="file of that copy (default: <pipeline>_grouped.yaml next to it)")
    grp.set_defaults(fn=_group)

    exp = sub.add_parser("export", help="export a run folder to ONNX (preprocessing inside), with metadata and a Triton layout")
    exp.add_argument("run_dir", help="run folder written by 'fit'")
    exp.add_argument("--out", help="export folder (default: exports/<run folder name>)")
    exp.add_argument("--int8", action="store_true", help="also write a dynamic int8 variant, with its test metric change")
    exp.add_argument("--fp16", action="store_true", help="also write a float16 variant, with its test metric change")
    exp.add_argument("--parity-rows", type=int, default=2048, help="held-out rows of the parity check")
    exp.add_argument("--tasks", help="comma-separated task subset: a task-sparse graph with only the towers and experts they use")
    exp.set_defaults(fn=_export)

    sco = sub.add_parser("score", help="score Parquet / CSV files with an export into one Parquet file (streamed; the server's scores)")
    sco.add_argument("export_dir", help="folder written by 'export'")
    sco.add_argument("inputs", nargs="+", metavar="INPUT", help="Parquet / CSV files, folders or globs (quoted)")
    sco.add_argument("--out", required=True, help="output Parquet file (written atomically)")
    sco.add_argument("--keep", help="comma-separated input columns copied beside the scores (e.g. ids)")
    sco.add_argument("--tasks", help="comma-separated tasks to write (default: all the export scores)")
    sco.add_argument("--workers", type=int, default=1, help="processes, each scoring a contiguous share of the row groups")
    sco.add_argument("--batch-rows", type=int, default=65_536, help="rows per ONNX call (bounds memory)")
    sco.add_argument("--variant", default="fp32", help="fp32, int8 or fp16 (as exported)")
    sco.add_argument("--provider", default="cpu", choices=["auto", "cpu", "cuda"], help="onnxruntime execution provider")
    sco.add_argument("--threads", type=int, help="onnxruntime intra-op threads per worker (default: cores / workers)")
    sco.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    sco.add_argument("--quiet", action="store_true", help="no progress line")
    sco.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="ray: Ray Data reads, an actor pool of onnxruntime sessions scores, --out is a folder of Parquet files")
    sco.add_argument("--address", help="--engine ray: an existing Ray cluster (default: start a local one)")
    sco.add_argument("--cpus-per-worker", type=float, default=1.0, help="--engine ray: Ray CPUs each scoring actor holds")
    sco.set_defaults(fn=_score)

    eva = sub.add_parser("evaluate", help="an export's metrics, calibration and input drift on new labelled rows (labels from its spec)")
    eva.add_argument("export_dir", help="folder written by 'export'")
    eva.add_argument("inputs", nargs="+", metavar="INPUT", help="labelled Parquet / CSV files, folders or globs (quoted)")
    eva.add_argument("--by", metavar="COLUMN", help="also report every metric per value of this column")
    eva.add_argument("--max-slices", type=int, default=50, help="largest --by slices reported (the rest summed)")
    eva.add_argument("--out", help="report folder (default: evaluations/<export>-<time>)")
    eva.set_defaults(fn=_evaluate)

    spl = sub.add_parser("split", help="write a run's test (or valid) split to Parquet, as the fit split it (for 'evaluate')")
    spl.add_argument("run_dir", help="run folder written by 'fit'")
    spl.add_argument("--split", choices=["test", "valid"], default="test")
    spl.add_argument("--out", required=True, help="Parquet file to write")
    spl.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    spl.set_defaults(fn=_split)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", module="torchmetrics")
        # Lightning's info lines (accelerator summary, logger tips, "Restoring states" per
        # evaluation) repeat what the command prints itself; warnings still show
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return args.fn(args)
    except (RecsysMTLError, OSError) as exc:  # bad input, or a file the OS refuses (permissions, disk full)
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
