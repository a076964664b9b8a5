"""Explaining ensembles: cross-validated members that differ (one fold kept a second seed
as a SeedEnsemble, another did not), and no CAM hooks left behind on the networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scandx.models import create_model
from scandx.models.registry import SeedEnsemble
from scandx.tasks.classification.explain.cam import explain_tensor, networks
from scandx.tasks.classification.explain.explain import explain_display
from scandx.tasks.classification.inference.ensemble import EnsemblePredictor
from scandx.tasks.classification.inference.predictor import Predictor

INFO = {
    "input": {
        "spatial_dims": 2,
        "channels": 1,
        "size": [32, 32],
        "mean": [0.35],
        "std": [0.27],
        "resize": "letterbox-bilinear-antialias",
        "intensity": "display [0,1]",
    },
    "task": "binary",
    "classes": ["normal", "lesion"],
    "positive_class": "lesion",
    "thresholds": {"positive": 0.5},
    "calibration": {"method": "none"},
}


def _net(members: int = 1) -> torch.nn.Module:
    return create_model("simple-cnn", 2, 1, 2, input_size=[32, 32], members=members)


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("first_seeded", [False, True])
def test_ensemble_of_a_plain_and_a_seed_ensemble_member_is_explained(first_seeded):
    torch.manual_seed(0)
    nets = [_net(2), _net()] if first_seeded else [_net(), _net(2)]
    ens = EnsemblePredictor([Predictor(n, INFO) for n in nets], INFO)
    display = np.random.default_rng(0).random((1, 40, 48)).astype(np.float32)
    for method in ("auto", "gradcam", "occlusion"):
        r = explain_display(ens, display, "x", method)
        assert r["heatmap"].shape == (40, 48) and 0 <= r["heatmap"].min() <= r["heatmap"].max() <= 1
    assert explain_display(ens, display, "x")["method"] == "layercam"  # the plain CNNs' rule
    assert explain_display(ens, display, "x")["layer"] == "features.3+features.7"
    assert all(_hook_count(n) == 0 for n in nets)


def test_seed_ensemble_map_is_the_mean_of_its_networks_maps():
    torch.manual_seed(1)
    seeded = _net(2)
    assert isinstance(seeded, SeedEnsemble) and len(networks(seeded)) == 2
    x = torch.randn(1, 1, 32, 32)
    # Grad-CAM of the mean logit at each seed's layers = each seed's own map (normalised)
    inside = explain_tensor(seeded, x, 1, "layercam", [f"members.{i}.features.3" for i in range(2)])
    per_net = np.mean(
        [explain_tensor(n, x, 1, "layercam", ["features.3"]) for n in networks(seeded)], 0
    )
    per_net = (per_net - per_net.min()) / (per_net.max() - per_net.min())
    np.testing.assert_allclose(inside, per_net, atol=1e-5)
    assert _hook_count(seeded) == 0


def test_a_layer_the_network_lacks_is_a_clear_error():
    with pytest.raises(ValueError, match="no layer members.0.features.3"):
        explain_tensor(_net(), torch.randn(1, 1, 32, 32), 1, "gradcam", ["members.0.features.3"])
