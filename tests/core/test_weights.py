"""Weights files are byte-for-byte reproducible, shared tensors included (core/weights.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import torch

from scandx.core.weights import load_weights, save_weights
from scandx.models import create_model

KW = {"strides": [[1, 1], [2, 2], [2, 2]], "kernels": [[3, 3]] * 3}
SAVE = (
    "import sys, torch\n"
    "from scandx.core.weights import save_weights\n"
    "from scandx.models import create_model\n"
    "torch.manual_seed(0)\n"
    f"m = create_model('dynunet', 2, 1, 2, input_size=[64, 64], **{KW!r})\n"
    "save_weights(m, sys.argv[1])\n"
)


def test_same_weights_give_the_same_file_whatever_the_hash_seed(tmp_path):
    digests = set()
    for seed in ("1", "2", "3"):
        path = tmp_path / f"w{seed}.safetensors"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", SAVE, str(path)], check=True, env=env)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_shared_tensors_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("dynunet", 2, 1, 2, input_size=[64, 64], **KW)
    save_weights(model, tmp_path / "w.safetensors")
    other = create_model("dynunet", 2, 1, 2, input_size=[64, 64], **KW)
    load_weights(other, tmp_path / "w.safetensors")
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
