"""Explanations: every registered model, geometry back to the image, CLI output, bad requests."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from scandx.cli import main
from scandx.core.privacy import file_ref
from scandx.models import create_model, list_models, min_input_size
from scandx.tasks.classification.data.images import letterbox_resize
from scandx.tasks.classification.explain import METHODS, explain_tensor, target_layers
from scandx.tasks.classification.explain.overlay import overlay, unletterbox


@pytest.mark.parametrize("name", list_models("classifier"))
def test_every_model_has_an_automatic_target_layer_and_a_heatmap(name):
    size = max(min_input_size(name), 64)
    model = create_model(name, 2, 1, 2, input_size=[size, size])
    layers = target_layers(model, (1, size, size))
    assert layers and set(layers) <= set(dict(model.named_modules()))
    heat = explain_tensor(model, torch.randn(1, 1, size, size), 1, "gradcam")
    assert heat.shape == (size, size) and heat.min() >= 0 and heat.max() <= 1


def test_target_layers_are_the_block_outputs_with_maps_of_2x2_or_more():
    big = create_model("resnet18", 2, 1, 2, input_size=[224, 224])
    assert target_layers(big, (1, 224, 224)) == ["layer1", "layer2", "layer3", "layer4"]
    tiny = create_model("resnet18", 2, 1, 2, input_size=[16, 16], small_stem=False)
    assert "layer4" not in target_layers(tiny, (1, 16, 16))  # a 1x1 map cannot localise


def test_unletterbox_inverts_letterbox_geometry():
    img = torch.zeros(1, 30, 60)
    img[0, 10:20, 40:50] = 1  # a bright square right of centre in a wide image
    boxed = letterbox_resize(img, [32, 32])[0].numpy()
    back = unletterbox(boxed, (30, 60))
    assert back.shape == (30, 60)
    peak = np.unravel_index(np.argmax(back), back.shape)
    assert 10 <= peak[0] < 20 and 40 <= peak[1] < 50


def test_overlay_keeps_the_display_image_where_the_map_is_zero():
    display = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    rgb = overlay(display, np.zeros((8, 8), np.float32))
    np.testing.assert_array_equal(rgb[..., 0], np.round(display[0] * 255).astype(np.uint8))


def test_explain_cli_on_dicom_and_png(quick_run, phantoms, tmp_path, capsys):
    run = quick_run
    files = [str(next(phantoms.rglob("*.dcm"))), str(next(phantoms.rglob("*.png")))]
    for method in METHODS:
        out = tmp_path / method
        assert main(["-q", "explain", str(run), *files, "--method", method, "--out", str(out)]) == 0
        with open(out / "explanations.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["file"] for r in rows] == [file_ref(f) for f in files]
        assert [r["input"] for r in rows] == ["1", "2"]
        assert all(r["class"] == "lesion" for r in rows)
        for r in rows:
            png = np.asarray(Image.open(r["overlay"]))
            assert png.shape == (32, 32, 3)  # the image's own geometry
    capsys.readouterr()
    code = main(
        ["-q", "explain", str(run), files[0], "--class", "tumour", "--out", str(tmp_path / "x")]
    )
    assert code == 2 and "unknown class" in capsys.readouterr().err


class _BrightnessModel(torch.nn.Module):
    """Class 1's logit is the mean activation of a 1x1 identity conv: brighter = class 1."""

    def __init__(self):
        super().__init__()
        self.layer1 = torch.nn.Conv2d(1, 1, 1, bias=False)
        torch.nn.init.ones_(self.layer1.weight)

    def forward(self, x):
        a = torch.relu(self.layer1(x)).mean(dim=(1, 2, 3))
        return torch.stack([-a, a], dim=1)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_cam_peaks_on_the_evidence_not_its_inverse(method):
    x = torch.full((1, 1, 16, 16), 0.1)
    x[0, 0, 3:6, 10:13] = 1.0  # the bright evidence
    heat = explain_tensor(_BrightnessModel(), x, 1, method, layers=["layer1"])
    y, xx = np.unravel_index(np.argmax(heat), heat.shape)
    assert 3 <= y < 6 and 10 <= xx < 13  # MONAI's default normaliser would put the peak elsewhere


class _PositionalModel(torch.nn.Module):
    """A dense head on flattened maps that only counts evidence in the top-left quadrant;
    the same evidence elsewhere lowers the score. Grad-CAM's channel-mean weight cannot
    tell the two places apart; LayerCAM's element-wise gradient can."""

    def __init__(self):
        super().__init__()
        self.layer1 = torch.nn.Conv2d(1, 1, 1, bias=False)
        torch.nn.init.ones_(self.layer1.weight)
        w = -torch.ones(16, 16)
        w[:8, :8] = 1.0
        self.register_buffer("w", w.flatten())

    def forward(self, x):
        a = torch.relu(self.layer1(x)).flatten(1) @ self.w / 64
        return torch.stack([-a, a], dim=1)


def test_layercam_follows_a_positional_dense_head_and_auto_picks_it():
    x = torch.full((1, 1, 16, 16), 0.05)
    x[0, 0, 2:5, 2:5] = 1.0  # counted evidence
    x[0, 0, 10:14, 10:14] = 1.0  # brighter, larger, but counts against the class
    heat = explain_tensor(_PositionalModel(), x, 1, "layercam", layers=["layer1"])
    y, xx = np.unravel_index(np.argmax(heat), heat.shape)
    assert y < 8 and xx < 8
    assert heat[10:14, 10:14].max() == 0.0  # negative gradients do not light up

    from scandx.models import create_model
    from scandx.tasks.classification.explain.cam import default_method

    assert default_method(create_model("simple-cnn", 2, 1, 2, input_size=[32, 32])) == "layercam"
    assert default_method(create_model("resnet18", 2, 1, 2, input_size=[32, 32])) == "gradcam"
