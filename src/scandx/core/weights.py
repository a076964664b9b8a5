"""Model weights as safetensors, byte-for-byte reproducible.

Networks whose modules share tensors (MONAI's DynUNet lists its blocks twice) cannot go
through ``safetensors.torch.save_file``, and ``save_model`` names the aliases it drops
in set-iteration order, so identical weights gave different files (and sha256s). Here
each shared tensor keeps its first name in sorted order and the file has no alias
metadata; loading restores the aliases because they are the same tensor in the model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from scandx.errors import ScandxError


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    state = model.state_dict()
    kept: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for name in sorted(state):
        t = state[name]
        key = (t.data_ptr(), tuple(t.shape))
        if key in seen:
            continue  # an alias of a tensor already kept
        seen.add(key)
        kept[name] = t.detach().cpu().contiguous()
    save_file(kept, str(path))


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    state = load_file(str(path))
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ScandxError(f"weights do not fit the network ({result.unexpected_keys[:3]})", path)
    own = model.state_dict()
    loaded = {(own[k].data_ptr(), tuple(own[k].shape)) for k in state}
    missing = [
        k for k in result.missing_keys if (own[k].data_ptr(), tuple(own[k].shape)) not in loaded
    ]
    if missing:
        raise ScandxError(f"weights miss tensors of the network ({missing[:3]})", path)
