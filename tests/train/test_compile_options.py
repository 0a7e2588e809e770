"""``trainer.compile.options``: inductor settings for the training compile, checked by name and passed
to torch.compile (with the mode spelled out as its settings, since torch.compile refuses both)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from recsys_mtl.errors import SpecError
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.compile import check_compile, compile_model, make_eager


def test_options_default_to_none_set() -> None:
    on = TrainerConfig(compile=True).compile
    assert on is not None and on.options == {}
    set_ = TrainerConfig(compile={"options": {"cpp_wrapper": True, "cpp.weight_prepack": False}}).compile
    assert set_ is not None and set_.options == {"cpp_wrapper": True, "cpp.weight_prepack": False}


@pytest.mark.parametrize("compile_cfg, message", [
    ({"options": {"no_such_setting": True}}, r"trainer\.compile\.options\.no_such_setting: not an inductor setting"),
    ({"backend": "aot_eager", "options": {"cpp_wrapper": True}}, r"trainer\.compile\.options: inductor settings, but .*'aot_eager'"),
])
def test_refused_options_name_the_field(compile_cfg: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        check_compile(TrainerConfig(compile=compile_cfg, accelerator="cpu"))


def test_inductor_settings_pass() -> None:
    check_compile(TrainerConfig(compile={"options": {"cpp_wrapper": True, "max_autotune": True}}, accelerator="cpu"))


class _Recorder(nn.Linear):
    """A module whose ``compile`` records the keywords it was given instead of compiling."""

    def __init__(self) -> None:
        super().__init__(2, 2)
        self.got: dict[str, Any] = {}

    def compile(self, *args: Any, **kwargs: Any) -> None:
        self.got = kwargs


@pytest.mark.parametrize("compile_cfg, mode, options", [
    ({}, "default", None),
    ({"mode": "max-autotune-no-cudagraphs"}, "max-autotune-no-cudagraphs", None),
    ({"options": {"cpp_wrapper": True}}, None, {"cpp_wrapper": True}),
    # the mode's own settings, then the options (which win where both name a setting)
    ({"mode": "max-autotune-no-cudagraphs", "options": {"cpp_wrapper": True, "coordinate_descent_tuning": False}},
     None, {"max_autotune": True, "coordinate_descent_tuning": False, "cpp_wrapper": True}),
])
def test_compile_model_passes_mode_or_options(compile_cfg: dict[str, object], mode: str | None, options: dict[str, object] | None) -> None:
    c = TrainerConfig(compile=compile_cfg).compile
    assert c is not None
    m = _Recorder()
    compile_model(m, c)
    assert m.got.get("mode") == mode and m.got.get("options") == options
    assert (m.got["backend"], m.got["dynamic"], m.got["recompile_limit"]) == ("inductor", None, 8)


@pytest.mark.slow
def test_a_model_compiled_with_options_trains_like_eager() -> None:
    """A real inductor compile with ``cpp_wrapper`` (C++ instead of Python around the kernels): the
    forward and the gradients are the eager ones."""
    torch.manual_seed(0)
    eager = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    compiled = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    compiled.load_state_dict(eager.state_dict())
    c = TrainerConfig(compile={"options": {"cpp_wrapper": True}}).compile
    assert c is not None
    compile_model(compiled, c)
    x = torch.randn(32, 6)
    out_e, out_c = eager(x), compiled(x)
    torch.testing.assert_close(out_c, out_e)
    out_e.square().sum().backward()
    out_c.square().sum().backward()
    for pe, pc in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(pc.grad, pe.grad)
    make_eager(compiled)
    assert list(compiled.state_dict()) == list(eager.state_dict())
