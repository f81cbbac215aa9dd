"""Grad-CAM, attention rollout and band shares on tiny models; calibration summaries on known inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import explain, metrics
from helpers.models import build_model


class FirstChannel(nn.Module):
    """A CNN whose FAKE logit is the total of its input's first channel; the second channel is ignored."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, 1] = 1.0

    def forward(self, x):
        return self.conv(x)[:, 0].sum(dim=(1, 2))


def test_grad_cam_lights_up_where_the_evidence_is_and_ignores_the_rest():
    x = torch.zeros(2, 3, 16, 16)
    x[:, 0, 4:8, 10:14] = 1.0  # what the logit counts
    x[:, 1, 9:14, 1:6] = 5.0   # a brighter distraction the logit ignores
    cam = explain.grad_cam(FirstChannel(), x)
    assert cam.shape == (2, 16, 16) and (cam >= 0).all() and np.allclose(cam.max(axis=(1, 2)), 1.0)
    inside = cam[:, 3:9, 9:15].sum(axis=(1, 2)) / cam.sum(axis=(1, 2))  # the square, give or take bilinear edges
    assert (inside > 0.99).all()
    assert cam[:, 10:13, 2:5].max() == 0.0


@pytest.mark.parametrize("name", ["meso4", "resnet50", "vgg19"])
def test_grad_cam_on_the_study_cnns(name):
    torch.manual_seed(0)
    model = build_model(name, image_size=32)
    cam = explain.explain(model, torch.randn(2, 3, 32, 32))
    assert cam.shape == (2, 32, 32) and np.isfinite(cam).all() and (cam >= 0).all() and cam.max() <= 1.0 + 1e-6
    assert model.training  # explain() puts the model back as it found it


def test_attention_rollout_rows_sum_to_one_and_map_is_normalised():
    torch.manual_seed(0)
    model = build_model("vit", image_size=32, size="tiny", depth=2, patch_size=8)
    x = torch.randn(3, 3, 32, 32)
    model.keep_attention = True
    model(x)
    rollout = explain.rollout_matrix(model.attention_maps())
    assert rollout.shape == (3, 17, 17)
    assert torch.allclose(rollout.sum(dim=-1), torch.ones(3, 17), atol=1e-5)
    model.keep_attention = False
    heat = explain.explain(model, x)
    assert heat.shape == (3, 32, 32) and (heat >= 0).all() and np.allclose(heat.max(axis=(1, 2)), 1.0)
    assert not model.keep_attention


def test_rollout_of_identity_attention_is_the_identity():
    eye = torch.eye(5).expand(1, 2, 5, 5)
    assert torch.allclose(explain.rollout_matrix([eye, eye, eye]), torch.eye(5).expand(1, 5, 5))


def test_band_mass_of_a_uniform_map_equals_the_band_areas():
    landmarks = np.array([[20, 24], [44, 24], [32, 34], [23, 46], [41, 46]], float)
    shares = explain.band_mass(np.ones((64, 64)), landmarks)
    assert shares["eyes_mass"] == pytest.approx(shares["eyes_area"])
    assert shares["lower_mass"] == pytest.approx(shares["lower_area"])
    focused = np.zeros((64, 64))
    focused[22:27, 18:47] = 1.0  # all the mass on the eyes
    assert explain.band_mass(focused, landmarks)["eyes_mass"] == pytest.approx(1.0)
    assert explain.band_mass(focused, landmarks)["lower_mass"] == 0.0


def test_calibration_summary_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    overconfident = 3.0 * true_logits  # a model three times too sure of itself
    val, test = slice(0, 2000), slice(2000, 4000)
    summary = metrics.calibration_summary(overconfident[val], y[val], overconfident[test], y[test])
    assert summary["temperature"] == pytest.approx(3.0, rel=0.15)
    assert summary["ece_after"] < summary["ece_before"] / 2
    assert summary["log_loss_after"] < summary["log_loss_before"]
