"""``trainer.compile``: settings checks, the in-place compile and its undo, and a compiled fit
against an eager one (same metrics, same checkpoint keys, export parity)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

from recsys_mtl.data.tensors import features_only
from recsys_mtl.errors import RecsysMTLError, SpecError
from recsys_mtl.export import export_run
from recsys_mtl.spec import load_pipeline
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.compile import check_compile, compile_errors, compile_model, eager_odd_batch, ray_refusal
from recsys_mtl.train.fit import FitResult, build_module, fit, prepare
from tests.support.paths import ROOT


def _pipeline(tmp: Path, *overrides: str):  # type: ignore[no-untyped-def]
    # 1,050 training rows in batches of 256: four full batches and a last one of 26 rows
    return load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1500", f"data.cache_dir={tmp / 'cache'}", f"runs_dir={tmp / 'runs'}", "trainer.max_epochs=2",
        "trainer.batch_size=256", "trainer.progress_bar=false", "trainer.plots=false", *overrides,
    ])


def test_switch_and_defaults() -> None:
    assert TrainerConfig().compile is None
    assert TrainerConfig(compile=False).compile is None
    on = TrainerConfig(compile=True).compile
    assert on is not None and (on.mode, on.dynamic, on.backend, on.evaluation) == ("default", None, "inductor", False)
    assert on.odd_batches == "eager"
    with pytest.raises(ValueError, match="odd_batches"):
        TrainerConfig(compile={"odd_batches": "pad"})
    assert TrainerConfig(compile={"mode": "max-autotune-no-cudagraphs", "dynamic": True}).compile.dynamic is True  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="mode"):
        TrainerConfig(compile={"mode": "fastest"})


@pytest.mark.parametrize("settings, message", [
    ({"strategy": "ddp"}, r"trainer\.compile: not supported with multi-process training \(strategy 'ddp'"),
    ({"devices": 2}, r"trainer\.compile: not supported with multi-process training .*devices 2"),
    ({"num_nodes": 2}, r"trainer\.compile: not supported with multi-process training .*num_nodes 2"),
    ({"compile": {"backend": "no_such_backend"}}, r"trainer\.compile\.backend: 'no_such_backend' is not a torch\.compile backend"),
])
def test_refused_settings_name_the_field(settings: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        check_compile(TrainerConfig(**{"compile": True, **settings}))


def test_single_process_settings_pass() -> None:
    check_compile(TrainerConfig(compile=True, accelerator="cpu", devices="auto"))
    check_compile(TrainerConfig())  # off: nothing checked
    check_compile(TrainerConfig(strategy="ddp", devices=2))  # off: not this check's business


@pytest.fixture
def no_cpp_compiler() -> Iterator[None]:
    from torch._inductor import config, cpp_builder

    # torch's own patch: a monkeypatch of its config module does not restore it cleanly
    with config.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        cpp_builder.cpp_compiler_search.cache_clear()  # the search is cached per process
        yield
    cpp_builder.cpp_compiler_search.cache_clear()


def test_inductor_without_a_cpp_compiler_is_refused(no_cpp_compiler: None) -> None:
    with pytest.raises(SpecError, match=r"trainer\.compile: inductor on CPU needs a C\+\+ compiler"):
        check_compile(TrainerConfig(compile=True, accelerator="cpu"))
    check_compile(TrainerConfig(compile={"backend": "aot_eager"}, accelerator="cpu"))  # no code generated: no compiler needed


def test_ray_is_refused() -> None:
    with pytest.raises(SpecError, match=r"trainer\.compile: not supported with --engine ray"):
        ray_refusal(TrainerConfig(compile=True))
    ray_refusal(TrainerConfig())


class _Doubler(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_a_failing_compiler_names_the_field() -> None:
    def broken(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        raise RuntimeError("no code for you")

    model = _Doubler()  # a module of torch.nn itself would be left to eager by dynamo
    model.compile(backend=broken)
    with pytest.raises(RecsysMTLError, match=r"trainer\.compile: torch\.compile failed on _Doubler: .*no code for you"), compile_errors(model):
        model(torch.ones(2, 3))


class _Counting:
    """A torch.compile backend that runs the traced graph as it is and counts the graphs it got."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        self.graphs += 1
        return gm.forward


@pytest.mark.parametrize("settings, training, graphs", [
    ({}, True, 1),  # the odd batch ran eagerly: no second graph
    ({"odd_batches": "compile"}, True, 2),  # automatic dynamic: one more graph for the other size
    ({"dynamic": True}, True, 1),  # dynamic from the start: the one graph fits every size
    ({}, False, 2),  # not a training forward: left to trainer.compile.evaluation's stance
])
def test_odd_training_batches_run_eagerly(settings: dict[str, object], training: bool, graphs: int) -> None:
    torch._dynamo.reset()
    counting = _Counting()
    c = TrainerConfig(compile=settings).compile
    assert c is not None
    model = _Doubler()
    model.compile(backend=counting, dynamic=c.dynamic)
    for rows in (8, 8, 3, 8):  # batch_size 8, then the epoch's last, shorter batch
        x = torch.arange(rows * 2, dtype=torch.float32).reshape(rows, 2)
        with eager_odd_batch(c, training, rows, batch_size=8):
            assert torch.equal(model(x), x * 2)
    assert counting.graphs == graphs
    torch._dynamo.reset()


@pytest.mark.parametrize("model", ["mmoe", *(pytest.param(m, marks=pytest.mark.slow) for m in ("ple", "home", "multitab"))])
def test_training_forward_has_no_graph_breaks(model: str, tmp_path: Path) -> None:
    # a graph break splits the step into several graphs (each compiled, with eager Python between)
    cfg, spec = _pipeline(tmp_path, f"model.name={model}", "model.params={}")
    prep = prepare(cfg, spec)
    module = build_module(prep)
    module.train()  # the training forward: SharedCapture's hooks keep the shared representation
    batch = {k: v[:64] for k, v in prep.train.columns().items()}
    torch._dynamo.reset()
    explained = torch._dynamo.explain(module.model)(features_only(batch))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), [str(b.reason) for b in explained.break_reasons]
    torch._dynamo.reset()


def test_setup_compiles_in_place_and_teardown_restores_eager(tmp_path: Path) -> None:
    cfg, spec = _pipeline(tmp_path, "trainer.compile={backend: eager}")
    module = build_module(prepare(cfg, spec))
    keys = list(module.state_dict())
    module.setup("fit")
    assert module.model._compiled_call_impl is not None
    assert list(module.state_dict()) == keys  # in place: no `_orig_mod.` prefix in checkpoints
    module.teardown("fit")
    assert module.model._compiled_call_impl is None
    compile_model(module.model, cfg.trainer.compile)  # type: ignore[arg-type]
    assert list(module.state_dict()) == keys


@pytest.fixture(scope="module")
def fits(tmp_path_factory: pytest.TempPathFactory) -> tuple[FitResult, FitResult, int]:
    """(eager fit, compiled fit, graphs the compiled fit compiled) of the same tiny pipeline."""
    tmp = tmp_path_factory.mktemp("compile")
    eager = fit(*_pipeline(tmp))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = fit(*_pipeline(tmp, "trainer.compile=true"))
    return eager, compiled, int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.mark.slow
def test_compiled_fit_matches_eager(fits: tuple[FitResult, FitResult, int]) -> None:
    eager, compiled, graphs = fits
    for split in ("val", "test"):
        assert compiled.metrics[split].keys() == eager.metrics[split].keys()
        for name, value in eager.metrics[split].items():
            assert compiled.metrics[split][name] == pytest.approx(value, abs=2e-3), (split, name)
    assert compiled.metrics["best_epoch"] == eager.metrics["best_epoch"]
    # one graph for the batches of 256; the last, smaller batch, validation and test ran eagerly
    # (odd_batches: eager, evaluation: false): no graph of their own
    assert graphs == 1


@pytest.mark.slow
def test_compiled_checkpoints_and_export_are_the_eager_ones(fits: tuple[FitResult, FitResult, int], tmp_path: Path) -> None:
    eager, compiled, _ = fits
    for ours_path, theirs_path in [(r.run_dir / r.metrics["best_checkpoint"] for r in (compiled, eager)),
                                   (r.run_dir / "checkpoints" / "last.ckpt" for r in (compiled, eager))]:
        ours = torch.load(ours_path, map_location="cpu", weights_only=True)["state_dict"]
        theirs = torch.load(theirs_path, map_location="cpu", weights_only=True)["state_dict"]
        assert list(ours) == list(theirs)
    result = export_run(compiled.run_dir, tmp_path / "export", parity_rows=64)
    assert result.metadata["parity"]["max_abs_diff"] <= result.metadata["parity"]["tolerance"]


@pytest.mark.slow
def test_a_compiled_run_resumes_compiled(tmp_path: Path) -> None:
    # its own runs: resuming continues the run folder it is given
    cfg, spec = _pipeline(tmp_path, "trainer.compile=true", "trainer.max_epochs=1")
    first = fit(cfg, spec)
    cfg, spec = _pipeline(tmp_path, "trainer.compile=true", "trainer.max_epochs=2")
    resumed = fit(cfg, spec, resume=first.run_dir)
    assert resumed.run_dir == first.run_dir
    assert resumed.metrics["epochs_run"] == 2
    last = torch.load(first.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1 and not any("_orig_mod" in k for k in last["state_dict"])
