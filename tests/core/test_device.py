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
