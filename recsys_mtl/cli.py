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
from typing import Callable, Sequence

from recsys_mtl.errors import RecsysMTLError


def _fit(args: argparse.Namespace) -> int:
    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train.run import fit

    cfg, spec = load_pipeline(args.pipeline, args.set)
    if args.runs_dir:
        cfg = cfg.model_copy(update={"runs_dir": Path(args.runs_dir)})
    result = fit(cfg, spec, resume=Path(args.resume) if args.resume else None)
    m = result.metrics
    print(f"run folder: {result.run_dir}")
    for split in ("val", "test"):
        shown = {k: v for k, v in m[split].items() if k.endswith(("/auc", "/rmse", "/accuracy"))}
        print(f"{split}: " + "  ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    print(f"best epoch {m['best_epoch']}, train {m['train_rows_per_sec']:.0f} rows/s, peak RSS {m['peak_rss_mib']:.0f} MiB")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from recsys_mtl.data.preprocess import check_frame
    from recsys_mtl.data.sources import load_splits
    from recsys_mtl.spec import load_pipeline

    cfg, spec = load_pipeline(args.pipeline, args.set)
    print(f"{args.pipeline}: pipeline and spec {cfg.spec} are valid")
    if args.data:
        splits = load_splits(cfg.data)
        for name, df in (("train", splits.train), ("valid", splits.valid), ("test", splits.test)):
            check_frame(spec, df, f"{name} split")
        print(f"data: {splits.sizes()} rows; every spec column present")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from recsys_mtl.data.synthetic import SyntheticConfig, write_parquet

    try:
        cfg = SyntheticConfig(rows=args.rows, num_tasks=args.tasks, task_correlation=args.correlation, seed=args.seed)
    except ValueError as exc:
        raise RecsysMTLError(f"generate: {exc}") from None
    print(write_parquet(cfg, Path(args.out)))
    return 0


def _models(args: argparse.Namespace) -> int:
    from recsys_mtl.balancing import BALANCERS
    from recsys_mtl.models import available_models

    print(json.dumps({"models": available_models(), "balancing": BALANCERS.names()}, indent=1))
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
    val = pipeline_cmd("validate", _validate, "check a pipeline and its spec (and with --data, the data)")
    val.add_argument("--data", action="store_true", help="also read the data and check its columns")

    gen = sub.add_parser("generate", help="write synthetic multitask data as Parquet")
    gen.add_argument("out")
    gen.add_argument("--rows", type=int, default=100_000)
    gen.add_argument("--tasks", type=int, default=2)
    gen.add_argument("--correlation", type=float, default=0.5)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(fn=_generate)

    sub.add_parser("list", help="registered models and balancing methods").set_defaults(fn=_models)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", module="torchmetrics")
    try:
        return args.fn(args)
    except RecsysMTLError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
