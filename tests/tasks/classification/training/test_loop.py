"""Loop pieces: device fallback, schedule, seeded augmentation."""

from __future__ import annotations

import torch

from scandx.core.device import runtime_device
from scandx.core.engine import fit, lr_factor
from scandx.core.run_dir import RunDir
from scandx.tasks.classification.plan import Augmentation, Plan
from scandx.tasks.classification.training.augment import augment_batch
from scandx.tasks.classification.training.loop import ClassificationTraining, TrainData


def _plan(**kw):
    base = dict(
        task="binary",
        classes=["a", "b"],
        input_size=[16, 16],
        model="simple-cnn",
        batch_size=16,
        epochs=1,
        intensity_mean=[0.0],
        intensity_std=[1.0],
    )
    return Plan(**{**base, **kw})


def test_cuda_plan_without_gpu_trains_on_cpu(tmp_path):
    plan = _plan(device="cuda", precision="fp16")
    if torch.cuda.is_available():  # pragma: no cover - only on GPU machines
        assert runtime_device(plan.device, plan.precision) == ("cuda", "fp16")
        return
    device, precision = runtime_device(plan.device, plan.precision)
    assert device == "cpu" and precision in ("bf16", "fp32")
    x, y = torch.randn(32, 1, 16, 16), torch.randint(0, 2, (32,))
    out = fit(ClassificationTraining(plan, TrainData(x, y, x[:8], y[:8])), RunDir(tmp_path))
    assert len(out.history) == 1 and out.device == "cpu"


def test_schedule_warms_up_then_decays_to_one_percent():
    total, warm = 100, 10
    f = [lr_factor(s, total, warm) for s in range(total + 1)]
    assert f[0] == 0.1 and f[9] == 1.0
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert abs(f[total] - 0.01) < 1e-9


def test_augmentation_is_seeded_and_identity_when_disabled():
    x = torch.randn(4, 1, 16, 16)
    mean, std = torch.tensor([0.0]), torch.tensor([1.0])
    aug = Augmentation()
    a = augment_batch(x, aug, mean, std, torch.Generator().manual_seed(3))
    b = augment_batch(x, aug, mean, std, torch.Generator().manual_seed(3))
    c = augment_batch(x, aug, mean, std, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    none = Augmentation(rotate_deg=0, scale=(1.0, 1.0), translate=0, brightness=0, contrast=0)
    same = augment_batch(x, none, mean, std, torch.Generator().manual_seed(0))
    assert torch.allclose(same, x, atol=1e-5)
