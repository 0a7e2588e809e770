"""``trainer.compile``: torch.compile of the model while it trains, off by default.

The model is compiled in place with ``nn.Module.compile`` when a fit starts and made eager again
when it ends, so parameter names, checkpoints, resume, calibration and exports are exactly those of
an eager run (an export reloads the run folder into a fresh, eager model anyway). Validation and
test run eagerly unless ``evaluation`` is set: on a census-sized split they take a second or two,
less than compiling their own graph would.

Shapes: the training forward is compiled for ``trainer.batch_size`` rows. A training batch of
another size (the epoch's last, smaller one) runs eagerly by default (``odd_batches: eager``): the
same arithmetic without a second graph, whose cold compile measured 14 s of a 45 s first epoch on
census (docs/benchmarks.md); that step is an eager run's step (no rows dropped or padded), so
training semantics are unchanged. With ``odd_batches: compile`` dynamo compiles once more with a
dynamic batch dimension (``dynamic: null``, torch's "automatic dynamic"), after which no size
recompiles; ``recompile_limit`` bounds the graphs per code path for ``dynamic: false``.

Caches: inductor's FX graph cache and the AOTAutograd cache persist compiled graphs across processes
in ``$TORCHINDUCTOR_CACHE_DIR`` (default ``/tmp/torchinductor_<user>``), keyed on the traced graph
(so on the model's code and sizes), input shapes, dtypes and strides, the torch version and
inductor's settings. A second fit of the same model and batch size, in any process, or a tuning
trial that repeats an earlier trial's architecture, skips code generation and the C++ compiler and
only traces (census MMoE at one thread: 1–6 s instead of 17–25 s). The first compile on a machine
(per cache folder) also builds inductor's vector-ISA probe programs into it (8–15 s here).

Speed (census MMoE 8 × [64], bf16-mixed, one thread; h53compile's notes in docs/history.md): the compiled
model's step alone is 0.94× the eager one (~0.35 ms of a ~7 ms Lightning step, within whole fits'
noise), and that bound is structural, not a setting. Inductor leaves the GEMMs to
oneDNN (10 ``mm`` + 5 ``addmm`` + 3 ``bmm`` a step, ~45 % of it, the very calls eager makes): its own
C++ GEMM templates need constant weights (``freezing``, which inductor applies only with gradients
off, i.e. inference), and its ``bmm`` template wins on one of the three, by ~0.08 ms. Its C++ takes
over the pointwise work, the embedding gather, the softmaxes and the autocast casts (the weights are
cast to bf16 inside the first forward kernel every step, as eager autocast does), but the compiled
call adds dynamo's frame lookup and AOTAutograd's runtime wrappers (~0.5 ms a step), most of what
the fusion saves; the loss, the optimizer and Lightning stay eager. One graph, no breaks, no
recompiles. ``options`` passes inductor settings (e.g. ``{cpp_wrapper: true}``, C++ instead of Python
around the kernels): measured on the step alone (benchmarks/compile_step_ab.py) ``cpp_wrapper`` is
0.97× the default compiled step and inductor's bmm template (``max_autotune`` with backends
``CPP,ATEN``) 0.97×, differences that whole fits on a shared machine do not resolve; neither is a
default (their effect at two threads is unmeasured; ``cpp_wrapper`` adds ~1.5 s to a warm start).
Compiling the loss with the model would pay more (0.95×; the module's training step, not here).

Multi-process training (DDP and the other distributed strategies, Ray Train) is refused: a compiled
submodule inside Lightning's DDP wrapper loses DDP's bucketed gradient overlap and has not been
measured here.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator

import torch
from torch import nn

from recsys_mtl.errors import RecsysMTLError, SpecError
from recsys_mtl.spec.pipeline import CompileConfig, TrainerConfig

#: Lightning strategies that start or join several processes (refused with ``trainer.compile``)
_DISTRIBUTED = re.compile(r"ddp|fsdp|deepspeed", re.IGNORECASE)


def check_compile(t: TrainerConfig) -> None:
    """Raise :class:`SpecError` naming ``trainer.compile`` when it is set but cannot be used here."""
    c = t.compile
    if c is None:
        return
    distributed = bool(_DISTRIBUTED.search(t.strategy)) or t.num_nodes > 1 or _device_count(t) > 1
    if distributed:
        raise SpecError(
            f"trainer.compile: not supported with multi-process training (strategy {t.strategy!r}, devices {t.devices!r}, "
            f"num_nodes {t.num_nodes}); set trainer.compile: null, or train on one device"
        )
    try:
        supported = torch._dynamo.is_dynamo_supported()
    except Exception:  # raises on an unsupported Python instead of answering False
        supported = False
    if not supported:
        raise SpecError(f"trainer.compile: torch.compile is not supported with this Python / torch {torch.__version__}; "
                        "set trainer.compile: null")
    backends = torch.compiler.list_backends(exclude_tags=())
    if c.backend not in backends:
        raise SpecError(f"trainer.compile.backend: {c.backend!r} is not a torch.compile backend (choose from {', '.join(backends)})")
    _check_options(c)
    if c.backend == "inductor" and not _cuda(t.accelerator):
        _check_cpp_compiler()


def _check_options(c: CompileConfig) -> None:
    """``options`` are inductor's: refused with another backend, and each name must be one of inductor's settings."""
    if not c.options:
        return
    if c.backend != "inductor":
        raise SpecError(f"trainer.compile.options: inductor settings, but trainer.compile.backend is {c.backend!r}; "
                        "remove the options or use backend: inductor")
    from torch._inductor import list_options

    known = set(list_options())
    for name in c.options:
        if name not in known:
            raise SpecError(f"trainer.compile.options.{name}: not an inductor setting (see torch._inductor.list_options(), "
                            "e.g. cpp_wrapper, max_autotune, cpp.weight_prepack)")


def ray_refusal(t: TrainerConfig) -> None:
    """Raise :class:`SpecError` when ``trainer.compile`` is set for a Ray Train fit (always distributed)."""
    if t.compile is not None:
        raise SpecError("trainer.compile: not supported with --engine ray (multi-process training); set trainer.compile: null")


def _device_count(t: TrainerConfig) -> int:
    """Devices ``trainer.devices`` asks for (a CPU run's 'auto' / -1 is one process)."""
    raw = t.devices.strip() if isinstance(t.devices, str) else t.devices
    if raw in ("auto", -1, "-1"):
        return torch.cuda.device_count() if _cuda(t.accelerator) else 1
    if isinstance(raw, int) or re.fullmatch(r"\d+", raw):
        return int(raw)
    return len([x for x in raw.split(",") if x.strip()])  # GPU ids '0,1'


def _cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _check_cpp_compiler() -> None:
    """Inductor turns CPU graphs into C++: without a compiler the first step would fail."""
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        raise SpecError("trainer.compile: inductor on CPU needs a C++ compiler (g++ or the one in $CXX), and none was "
                        "found; install one, or set trainer.compile: null") from None


def compile_model(model: nn.Module, c: CompileConfig) -> None:
    """Compile ``model``'s forward in place (its modules, parameters and state-dict keys unchanged)."""
    model.compile(dynamic=c.dynamic, backend=c.backend, recompile_limit=c.recompile_limit, **_mode_or_options(c))


def _mode_or_options(c: CompileConfig) -> dict[str, object]:
    """torch.compile's ``mode``, or with ``options`` set its ``options``: torch.compile refuses both
    at once, so the mode is spelled out as the inductor settings it stands for, ``options`` over them."""
    if not c.options:
        return {"mode": c.mode}
    from torch._inductor import list_mode_options

    return {"options": {**list_mode_options(c.mode, c.dynamic), **c.options}}


def make_eager(model: nn.Module) -> None:
    """Undo :func:`compile_model`: ``nn.Module.compile`` keeps the compiled call in this attribute
    and has no public inverse; without it the module calls its plain forward again."""
    model._compiled_call_impl = None


def _force_eager(when: bool) -> contextlib.AbstractContextManager[None]:
    """Compiled forwards run eagerly inside the block when ``when``; otherwise nothing changes."""
    return torch.compiler.set_stance("force_eager") if when else contextlib.nullcontext()


def eager_odd_batch(c: CompileConfig, training: bool, rows: int, batch_size: int) -> contextlib.AbstractContextManager[None]:
    """Run a training forward of ``rows`` != ``batch_size`` rows eagerly unless ``c.odd_batches`` is
    ``compile`` (or the graph is dynamic from the start: it already fits every size)."""
    return _force_eager(training and rows != batch_size and c.odd_batches != "compile" and c.dynamic is not True)


def eager_unless(c: CompileConfig | None) -> contextlib.AbstractContextManager[None]:
    """Run compiled forwards eagerly inside this block unless ``c.evaluation`` asks to compile them."""
    return _force_eager(c is not None and not c.evaluation)


@contextlib.contextmanager
def compile_errors(model: nn.Module) -> Iterator[None]:
    """Re-raise a torch.compile failure as :class:`RecsysMTLError` naming ``trainer.compile``."""
    try:
        yield
    except torch._dynamo.exc.TorchDynamoException as exc:
        # "backend='inductor' raised:" is followed by the cause on the next line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = " ".join(lines[:2] or [type(exc).__name__])[:400]
        raise RecsysMTLError(f"trainer.compile: torch.compile failed on {type(model).__name__}: {first}; "
                             "set trainer.compile: null to train eagerly") from exc
