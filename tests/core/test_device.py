"""Device and precision selection (core/device.py): CPU-only CI checks the CUDA logic."""

from __future__ import annotations

import pytest
import torch

from scandx.core import device as dev
from scandx.errors import ScandxError


def test_forced_precision_overrides_plan_and_detection(monkeypatch):
    monkeypatch.setenv("SCANDX_PRECISION", "fp32")
    assert dev.detect_device()[1] == "fp32"
    assert dev.runtime_device("cpu", "bf16") == ("cpu", "fp32")
    monkeypatch.setenv("SCANDX_PRECISION", "bf16")
    assert dev.runtime_device("cpu", "fp32") == ("cpu", "bf16")
    monkeypatch.setenv("SCANDX_PRECISION", "fp8")
    with pytest.raises(ScandxError, match="SCANDX_PRECISION"):
        dev.detect_device()


def test_cpu_detection_follows_the_cpu_flags(monkeypatch):
    monkeypatch.delenv("SCANDX_PRECISION", raising=False)
    monkeypatch.setattr(dev.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: True)
    assert dev.detect_device() == ("cpu", "bf16")
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: False)
    assert dev.detect_device() == ("cpu", "fp32")


def test_cuda_plans_ask_for_amp_and_fall_back_to_the_cpu(monkeypatch):
    monkeypatch.delenv("SCANDX_PRECISION", raising=False)
    monkeypatch.setattr(dev.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dev.torch.cuda, "is_bf16_supported", lambda: False)
    assert dev.detect_device() == ("cuda", "fp16")  # older GPU: fp16 AMP + scaling
    monkeypatch.setattr(dev.torch.cuda, "is_bf16_supported", lambda: True)
    assert dev.detect_device() == ("cuda", "bf16")
    assert dev.runtime_device("cuda", "fp16") == ("cuda", "fp16")
    monkeypatch.setenv("SCANDX_DEVICE", "cpu")  # keep a GPU machine on the CPU
    assert dev.detect_device()[0] == "cpu"
    monkeypatch.delenv("SCANDX_DEVICE")
    monkeypatch.setattr(dev.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: False)
    assert dev.runtime_device("cuda", "fp16") == ("cpu", "fp32")
    assert dev.runtime_device("cpu", "fp16") == ("cpu", "fp32")  # no fp16 autocast on CPUs


def test_gradient_scaling_only_for_fp16_on_cuda():
    assert not dev.grad_scaler("cpu", "fp16").is_enabled()
    assert not dev.grad_scaler("cpu", "bf16").is_enabled()
    assert dev.autocast_dtype("fp32") is None and dev.autocast_dtype("bf16") == torch.bfloat16


def test_autocast_context_is_bf16_on_the_cpu_and_a_no_op_in_fp32():
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with dev.autocast("cpu", "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with dev.autocast("cpu", "fp32"):
        assert layer(x).dtype == torch.float32


def _weight_grad(conv: torch.nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    conv.zero_grad()
    with dev.autocast("cpu", precision):
        out = conv(x)
    out.float().square().sum().backward()
    return conv.weight.grad.clone()


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: torch.nn.Conv3d(32, 32, 3, padding=1, bias=False), (2, 32, 2, 8, 8)),
        (lambda: torch.nn.Conv3d(16, 16, 5, padding=2), (2, 16, 4, 6, 6)),
        (lambda: torch.nn.ConvTranspose3d(32, 16, 3, padding=1), (2, 32, 2, 4, 4)),
    ],
)
def test_a_3d_convolution_on_a_thin_map_gets_the_right_weight_gradient_in_bf16(make, shape):
    """The case PyTorch 2.13's CPU bf16 kernel gets wrong (1e30 or nan; every epoch of a
    3D autoencoder on 8-slice volumes diverged): guarded, the weight gradient matches
    fp32's to bf16's precision, with the same weights, names and state dict."""
    torch.manual_seed(0)
    conv, x = make(), torch.randn(*shape)
    names = list(conv.state_dict())
    reference = _weight_grad(conv, x, "fp32")
    guarded = dev.guard_cpu_bf16(torch.nn.Sequential(conv), "cpu", "bf16")[0]
    assert guarded is conv and isinstance(conv, torch.nn.modules.conv._ConvNd)
    assert list(conv.state_dict()) == names
    for _ in range(3):  # the bad kernel's garbage varies from call to call
        got = _weight_grad(conv, x, "bf16")
        assert torch.isfinite(got).all()
        assert (got - reference).abs().max() <= 0.02 * reference.abs().max()


def test_the_guard_keeps_bf16_where_the_kernel_is_right_and_touches_nothing_else():
    conv3, conv2 = torch.nn.Conv3d(4, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1)
    model = dev.guard_cpu_bf16(torch.nn.Sequential(conv3), "cpu", "bf16")
    assert type(dev.guard_cpu_bf16(model, "cpu", "bf16")[0]) is type(model[0])  # idempotent
    with dev.autocast("cpu", "bf16"):
        assert model(torch.randn(1, 4, 3, 6, 6)).dtype == torch.bfloat16  # deep enough
        assert model(torch.randn(1, 4, 2, 6, 6)).dtype == torch.float32  # thin: fp32
    assert type(dev.guard_cpu_bf16(conv2, "cpu", "bf16")) is torch.nn.Conv2d
    plain = torch.nn.Conv3d(4, 4, 3)
    for device, precision in [("cpu", "fp32"), ("cuda", "bf16")]:
        assert type(dev.guard_cpu_bf16(plain, device, precision)) is torch.nn.Conv3d
