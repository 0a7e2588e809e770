"""Everything about a pipeline that can be checked without its data.

Trainer settings against Lightning's accepted values and against this machine; model and
balancing names and parameters against their registries (built once on shape-only
preprocessing, so checks that need the tasks or the feature layout run too). ``recsys-mtl
validate`` and :func:`recsys_mtl.train.fit.fit` (before any data is read or folder written) run
the same checks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from typing import Iterator, get_args

import lightning as L
import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.strategies import StrategyRegistry

from recsys_mtl.balancing import build_balancer
from recsys_mtl.features.fitted import FittedNumeric
from recsys_mtl.features.registry import for_each
from recsys_mtl.features.tables import shape_only_tables
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.errors import SpecError, did_you_mean
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import PipelineConfig, TrainerConfig
from recsys_mtl.train.compile import check_compile
from recsys_mtl.train.execution import check_strategy, check_trainer_config
from recsys_mtl.train.loggers import check_loggers
from recsys_mtl.train.rl import check_rl

#: the values Lightning's Trainer accepts (its own registries and precision literals)
PRECISIONS: tuple[str, ...] = (*get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS))
ACCELERATORS: tuple[str, ...] = ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))
STRATEGIES: tuple[str, ...] = ("auto", *StrategyRegistry.available_strategies())


def check_pipeline(cfg: PipelineConfig, spec: FeatureSpec) -> None:
    """Raise :class:`SpecError` naming the field when a trainer, model or balancing setting is bad."""
    check_trainer(cfg.trainer)
    check_components(cfg, spec)
    if cfg.rl is not None:
        check_rl(cfg.rl.name, cfg.rl.params, spec.tasks)


# ---------------------------------------------------------------------- trainer
def _one_of(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SpecError(f"trainer.{field}: {value!r} is not accepted{did_you_mean(value, list(allowed))} (choose from {', '.join(allowed)})")


def machine_devices(accelerator: str) -> tuple[str, int] | None:
    """(what a device is, how many this machine has) for ``accelerator``; None when Lightning decides."""
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        return "CUDA GPU", torch.cuda.device_count()
    if accelerator == "cpu":
        return "CPU core", os.cpu_count() or 1
    return None


def check_devices(t: TrainerConfig) -> None:
    """``devices`` is a count, -1 (all), 'auto' or GPU ids ('0,1'), within what the machine has."""
    raw = t.devices.strip() if isinstance(t.devices, str) else t.devices
    if raw == "auto":
        return
    have = machine_devices(t.accelerator)
    if have is not None and have[1] == 0:
        raise SpecError(f"trainer.accelerator: {t.accelerator!r} needs a {have[0]}, but this machine has none")
    if isinstance(raw, int) or re.fullmatch(r"-?\d+", raw):
        n = int(raw)
        if n == 0 or n < -1:
            raise SpecError(f"trainer.devices: {n} is not a device count (use a count >= 1, -1 for all, or 'auto')")
        if have is not None and n > have[1]:
            raise SpecError(
                f"trainer.devices: {n} requested but this machine has {have[1]} {have[0]}"
                f"{'s' if have[1] != 1 else ''} (trainer.accelerator {t.accelerator!r}; devices counts per machine)"
            )
        return
    if not re.fullmatch(r"\d+(\s*,\s*\d+)*\s*,?", raw):
        raise SpecError(f"trainer.devices: {raw!r} is not a device count, -1, 'auto' or a list of GPU ids like '0,1'")
    ids = [int(x) for x in raw.split(",") if x.strip()]
    if have is not None and have[0] != "CUDA GPU":
        raise SpecError(f"trainer.devices: GPU ids {raw!r} need a GPU, but trainer.accelerator {t.accelerator!r} runs on {have[0]}s")
    if have is not None and max(ids) >= have[1]:
        raise SpecError(f"trainer.devices: GPU id {max(ids)} requested but this machine has {have[1]} CUDA GPU(s)")


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Building a throw-away Trainer prints device and tip lines; they belong to the real run."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def check_trainer(t: TrainerConfig) -> None:
    _one_of("precision", t.precision, PRECISIONS)
    _one_of("accelerator", t.accelerator, ACCELERATORS)
    _one_of("strategy", t.strategy, STRATEGIES)
    check_devices(t)
    check_loggers(t)
    check_compile(t)
    check_trainer_config(t)
    # combinations (fsdp on CPU, a missing DeepSpeed, no GPU for 'gpu'...) as Lightning judges them;
    # building a Trainer starts nothing and writes nothing
    try:
        with _quiet_lightning():
            trainer = L.Trainer(
                accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
                precision=t.precision,  # type: ignore[arg-type]
                logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            )
    except Exception as exc:  # Lightning raises several types (MisconfigurationException, ValueError, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise SpecError(
            f"trainer: Lightning refuses accelerator={t.accelerator!r}, devices={t.devices!r}, "
            f"strategy={t.strategy!r}, precision={t.precision!r}: {first}"
        ) from None
    check_strategy(trainer.strategy, t.steps_per_execution)


# ---------------------------------------------------------------------- model and balancing
def shape_only_preprocessor(spec: FeatureSpec) -> Preprocessor:
    """Preprocessing with the spec's layout but tiny tables and no statistics: enough to build a
    model and check its parameters before any data is read. Never used to transform data."""
    numeric: dict[str, FittedNumeric] = {}
    for kind, f in for_each(spec.features):
        numeric |= kind.shape_only(f)
    return Preprocessor(spec, shape_only_tables(spec.features), numeric)


def check_components(cfg: PipelineConfig, spec: FeatureSpec) -> None:
    """Build the model (on shape-only preprocessing) and the balancer: unknown names, bad params
    and cross-checks (tasks named in params, ...) fail as :class:`SpecError`."""
    context = model_context(shape_only_preprocessor(spec).layout, spec.tasks, cfg.encoder)
    rng = torch.random.get_rng_state()  # building draws initial weights; leave the caller's stream alone
    try:
        try:
            model = build_model(cfg.model.name, cfg.model.params, context)
        except ValueError as exc:  # a constructor's own check, not yet a SpecError
            raise SpecError(f"model.params: {exc} (model {cfg.model.name!r})") from None
        try:
            build_balancer(cfg.balancing.name, cfg.balancing.params, model.task_names)
        except ValueError as exc:
            raise SpecError(f"balancing.params: {exc} (balancing {cfg.balancing.name!r})") from None
    finally:
        torch.random.set_rng_state(rng)
