"""Device and precision: chosen here, for every task, in one place.

- ``detect_device()``: what a plan should ask for on this machine: CUDA with bf16 AMP
  (fp16 AMP with gradient scaling on GPUs without bf16), else the CPU with bf16 autocast
  where the CPU has AVX512-BF16 or AMX, else fp32.
- ``runtime_device(device, precision)``: what a run actually uses: a CUDA plan on a
  machine without a GPU falls back to the CPU (with a warning).
- ``force_precision(p)`` (the CLI's ``--precision``) and
  ``SCANDX_PRECISION=fp32|bf16|fp16`` force the precision of new plans and of running
  ones, so a test or benchmark reproduces the other kind of machine (fp32 on an AMX
  CPU, say); ``SCANDX_DEVICE=cpu`` keeps a GPU machine on the CPU.
- ``autocast(device, precision)`` and ``grad_scaler(device, precision)``: the training
  context every task's steps run in. Inference is fp32 (a probability must not depend
  on the batch it was computed in).
- ``guard_cpu_bf16(model, device, precision)``: the engine's models on a bf16 CPU run a
  3D convolution whose input is thinner (along depth) than its kernel in fp32. PyTorch
  2.13's CPU kernel for the weight gradient of such a convolution under bf16 autocast
  returns garbage (1e30 or nan: a 3x3x3 kernel on a map 2 deep, 5x5x5 on 2-4 deep;
  forward and input gradient are right; 2D and stride-2 are unaffected;
  ``tests/core/test_device.py`` pins it). Thin maps are small, so fp32 costs little.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_ENV = "SCANDX_PRECISION"
DEVICE_ENV = "SCANDX_DEVICE"


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


_FORCED: list[str] = []  # innermost force_precision() last


@contextlib.contextmanager
def force_precision(precision: str | None) -> Iterator[None]:
    """Within this block, plans and runs use ``precision`` (``--precision``); None: no
    change. Takes precedence over ``SCANDX_PRECISION``."""
    if precision is None:
        yield
        return
    check_precision(precision)
    _FORCED.append(precision)
    try:
        yield
    finally:
        _FORCED.pop()


def check_precision(value: str) -> str:
    if value not in PRECISIONS:
        from scandx.errors import ScandxError

        raise ScandxError(f"precision {value!r}: choose one of {', '.join(PRECISIONS)}")
    return value


def forced_precision() -> str | None:
    if _FORCED:
        return _FORCED[-1]
    value = os.environ.get(PRECISION_ENV, "").strip().lower()
    if not value:
        return None
    if value not in PRECISIONS:
        from scandx.errors import ScandxError

        raise ScandxError(f"{PRECISION_ENV}={value!r}: choose one of {', '.join(PRECISIONS)}")
    return value


def cuda_usable() -> bool:
    return os.environ.get(DEVICE_ENV, "").strip().lower() != "cpu" and torch.cuda.is_available()


def detect_device() -> tuple[str, str]:
    """(device, precision) a new plan asks for on this machine."""
    if cuda_usable():
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        device = "cuda"
    else:
        device, precision = "cpu", "bf16" if cpu_has_bf16() else "fp32"
    return device, forced_precision() or precision


def runtime_device(device: str, precision: str) -> tuple[str, str]:
    """The device and precision a run uses: the plan's, unless no GPU is visible (then
    this CPU's), or ``SCANDX_PRECISION`` forces another precision."""
    if device.startswith("cuda") and not cuda_usable():
        precision = "bf16" if cpu_has_bf16() else "fp32"
        log.warning("plan asks for CUDA but no GPU is visible: running on the CPU in %s", precision)
        device = "cpu"
    precision = forced_precision() or precision
    if device == "cpu" and precision == "fp16":
        precision = "bf16" if cpu_has_bf16() else "fp32"  # no fp16 autocast on CPUs
    return device, precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


@contextlib.contextmanager
def autocast(device: str, precision: str) -> Iterator[None]:
    """Mixed precision for the forward pass (bf16 on CPUs that have it, bf16/fp16 on
    CUDA); a no-op in fp32."""
    dtype = autocast_dtype(precision)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    with torch.autocast(kind, dtype=dtype or torch.float32, enabled=dtype is not None):
        yield


def grad_scaler(device: str, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA (bf16 and fp32 need none; disabled otherwise)."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return torch.amp.GradScaler(kind, enabled=precision == "fp16" and kind == "cuda")


def _thin_input_in_fp32(self: torch.nn.Module, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    base = super(type(self), self).forward  # the guarded class's own forward
    depth = self.kernel_size[0]  # type: ignore[index]
    if x.dim() == 5 and x.shape[2] < depth and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return base(x.float(), *args, **kwargs)
    return base(x, *args, **kwargs)


_GUARDED: dict[type, type] = {}


def guard_cpu_bf16(model: torch.nn.Module, device: str, precision: str) -> torch.nn.Module:
    """On the CPU in bf16, every 3D (transposed) convolution of ``model`` runs in fp32
    where its input is thinner than its kernel (see the module's docstring); weights,
    names and everything else stay as they are. Returns ``model``."""
    if device != "cpu" or precision != "bf16":
        return model
    convs = (torch.nn.Conv3d, torch.nn.ConvTranspose3d)
    for m in model.modules():
        cls = type(m)
        if isinstance(m, convs) and cls not in _GUARDED.values():
            name, body = f"Bf16Guarded{cls.__name__}", {"forward": _thin_input_in_fp32}
            m.__class__ = _GUARDED.setdefault(cls, type(name, (cls,), body))
    return model
