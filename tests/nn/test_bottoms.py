"""TaskSENet: per-task field reweighting (DTRN's representation refinement)."""

from __future__ import annotations

import torch

from recsys_mtl.nn.bottoms import TaskSENet


def test_identity_at_init_and_shapes() -> None:
    senet = TaskSENet([3, 1, 2], num_tasks=4, reduction=2)
    x = torch.randn(5, 6)
    out = senet(x)
    assert out.shape == (4, 5, 6)
    assert torch.allclose(out, x.expand(4, 5, 6))  # W2 = 0 → every weight 2·σ(0) = 1
    assert senet.last_weights.shape == (4, 5, 3)


def test_a_field_is_scaled_as_a_whole_and_tasks_differ() -> None:
    torch.manual_seed(0)
    senet = TaskSENet([3, 1, 2], num_tasks=2, reduction=1)
    with torch.no_grad():
        senet.w2.normal_()
    x = torch.randn(5, 6)
    out = senet(x)
    ratio = out / x
    # every column of a field gets the same weight, in (0, 2)
    for cols in ([0, 1, 2], [3], [4, 5]):
        assert torch.allclose(ratio[:, :, cols], ratio[:, :, cols[:1]].expand(-1, -1, len(cols)), atol=1e-5)
    assert ratio.min() > 0 and ratio.max() < 2
    assert not torch.allclose(out[0], out[1])
    # squeeze = field means: the weights of row 0 depend on the field means only
    y = x.clone()
    y[0, :3] = y[0, :3].mean()  # same mean, different values
    assert torch.allclose(senet(y)[:, 0, 3:] / y[0, 3:], ratio[:, 0, 3:], atol=1e-5)


def test_gradients_reach_every_parameter() -> None:
    senet = TaskSENet([4, 4, 1], num_tasks=3)
    with torch.no_grad():
        senet.w2.normal_()  # at init W2 = 0 blocks W1's gradient, by design
    senet(torch.randn(8, 9)).pow(2).sum().backward()
    for name, p in senet.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
