"""Grad-CAM, attention rollout and band shares on tiny models; calibration summaries on known inputs."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from helpers import explain, metrics
from helpers.faces import LANDMARK_NAMES
from helpers.models import build_model

class FirstChannel(nn.Module):
    """A CNN whose logit is `sign` times the total of its input's first channel; the second channel is ignored."""

    def __init__(self, sign: float = 1.0):
        super().__init__()
        self.sign = sign
        self.conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, 1] = 1.0

    def forward(self, x):
        return self.sign * self.conv(x)[:, 0].sum(dim=(1, 2))


def _evidence_images(n: int = 2) -> torch.Tensor:
    """A square the logit counts and a brighter distraction it ignores."""
    x = torch.zeros(n, 3, 16, 16)
    x[:, 0, 4:8, 10:14] = 1.0
    x[:, 1, 9:14, 1:6] = 5.0
    return x


def _assert_on_the_square(cam: np.ndarray) -> None:
    """All of the map on the evidence square (give or take bilinear edges), none on the distraction."""
    assert cam.shape == (len(cam), 16, 16) and (cam >= 0).all() and np.allclose(cam.max(axis=(1, 2)), 1.0)
    inside = cam[:, 3:9, 9:15].sum(axis=(1, 2)) / cam.sum(axis=(1, 2))
    assert (inside > 0.99).all()
    assert cam[:, 10:13, 2:5].max() == 0.0


def test_grad_cam_lights_up_where_the_evidence_is_and_ignores_the_rest():
    _assert_on_the_square(explain.grad_cam(FirstChannel(), _evidence_images(), target="fake"))


def test_a_confidently_real_face_gets_a_map_when_the_real_class_is_explained():
    model, x = FirstChannel(sign=-10.0), _evidence_images()  # logit -160: P(FAKE) ~ 0, the square is REAL evidence
    assert (model(x) < -100).all()
    # The FAKE logit's map is all zero here: every channel only lowers it. That was the old, FAKE-only Grad-CAM.
    assert explain.grad_cam(model, x, target="fake").max() == 0.0
    for kwargs in ({"target": "real"}, {"labels": ["REAL", "REAL"]}, {"labels": [0, 0]}, {"target": "predicted"}, {}):
        _assert_on_the_square(explain.grad_cam(model, x, **kwargs))


def test_grad_cam_targets_each_face_by_its_own_label():
    x = _evidence_images()
    fake, real = explain.grad_cam(FirstChannel(), x, labels=["FAKE", "REAL"])
    assert fake.max() == 1.0 and real.max() == 0.0  # the square is FAKE evidence: nothing argues REAL
    with pytest.raises(ValueError, match="needs labels"):
        explain.grad_cam(FirstChannel(), x, target="label")
    with pytest.raises(ValueError, match="unknown Grad-CAM target"):
        explain.grad_cam(FirstChannel(), x, target="REAL")
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        explain.grad_cam(FirstChannel(), x, labels=[1, 0, 1])


def _hand_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, signs: torch.Tensor) -> np.ndarray:
    """Grad-CAM written out with a plain hook on `layer`: ReLU(sum_k mean(dS/dA_k) A_k), upsampled, max 1."""
    kept = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.update(a=out) or out.retain_grad())
    try:
        (signs * model(x.clone().requires_grad_(True))).sum().backward()
    finally:
        handle.remove()
    a, g = kept["a"].detach(), kept["a"].grad
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return (cam / cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]).numpy()


def _model_and_images(name: str, size: int, n: int):
    """A random-init study CNN in eval mode and `n` noise images on which both classes have some evidence."""
    torch.manual_seed(0)
    model = build_model(name, image_size=size).eval()
    x = torch.randn(n, 3, size, size)
    if name.startswith("resnet"):
        # A random ResNet's non-negative block outputs all push one way, leaving the other class's map
        # zero: centre its head and give the images two halves of different contrast.
        # From scratch, each block's last BatchNorm starts at zero (zero_init_residual), so the last block
        # would pass its input through unchanged: give those scales torchvision's default (one) back.
        with torch.no_grad():
            model.fc.weight -= model.fc.weight.mean()
            for block in model.modules():
                if isinstance(block, torchvision.models.resnet.Bottleneck):
                    block.bn3.weight.fill_(1.0)
        x[:, :, :, : size // 2] *= 3
    return model, x


@pytest.mark.slow
def test_resnet_grad_cam_reads_the_last_block_output_not_its_last_conv():
    model, x = _model_and_images("resnet50", 96, 2)
    layer, name = explain.cam_layer(model)
    assert layer is model.layer4[-1] and name == "layer4[-1]"
    ours = explain.grad_cam(model, x, labels=[1, 0])
    assert (ours.max(axis=(1, 2)) == 1.0).all()  # neither map is all zero, so the comparison means something
    signs = torch.tensor([1.0, -1.0])  # the first face is FAKE (+logit), the second REAL (-logit)
    np.testing.assert_allclose(ours, _hand_cam(model, model.layer4[-1], x, signs), atol=1e-5)
    # The old layer (conv3, before BatchNorm and the residual add) gives another map: the check can fail.
    assert not np.allclose(ours, _hand_cam(model, model.layer4[-1].conv3, x, signs), atol=1e-2)


@pytest.mark.parametrize("name, layer_name", [("meso4", "features[-1]"), ("mesoinception4", "features[-1]"),
                                              ("resnet50", "layer4[-1]"), ("vgg19", "features[35]")])
def test_grad_cam_on_the_study_cnns(name, layer_name):
    torch.manual_seed(0)
    model = build_model(name, image_size=32)
    layer, found = explain.cam_layer(model)
    assert found == layer_name
    if name == "vgg19":
        assert isinstance(layer, nn.ReLU) and layer is [m for m in model.features if isinstance(m, nn.ReLU)][-1]
    cam = explain.explain(model, torch.randn(2, 3, 32, 32), labels=["FAKE", "REAL"])
    assert cam.shape == (2, 32, 32) and np.isfinite(cam).all() and (cam >= 0).all() and cam.max() <= 1.0 + 1e-6
    assert model.training  # explain() puts the model back as it found it
    assert layer_name in explain.explain_method(model, labels_given=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "vgg19", "meso4"])
def test_grad_cam_agrees_with_pytorch_grad_cam(name):
    gradcam = pytest.importorskip("pytorch_grad_cam")
    model, x = _model_and_images(name, 96, 3)
    labels = np.array([1, 0, 1])
    ours = explain.grad_cam(model, x, labels=labels)
    layer = explain.cam_layer(model)[0]
    # Their targets act on one image's output; ours is one logit, so REAL is its negation.
    targets = [(lambda out: out) if flag else (lambda out: -out) for flag in labels]
    with gradcam.GradCAM(model=model, target_layers=[layer]) as cam:
        theirs = cam(input_tensor=x, targets=targets)

    def min_max(maps):
        low, high = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
        assert (high - low > 0.1).all()  # a flat map would agree with anything
        return (maps - low) / (high - low)

    # They min-max scale before upsampling, we scale to max 1 after: affine images of the same map.
    np.testing.assert_allclose(min_max(ours), min_max(theirs), atol=1e-4)


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
    assert shares["eyes_share"] == pytest.approx(shares["eyes_area"])
    assert shares["lower_share"] == pytest.approx(shares["lower_area"])
    focused = np.zeros((64, 64))
    focused[22:27, 18:47] = 1.0  # all the mass on the eyes
    assert explain.band_mass(focused, landmarks)["eyes_share"] == pytest.approx(1.0)
    assert explain.band_mass(focused, landmarks)["lower_share"] == 0.0


LANDMARKS = np.array([[20, 24], [44, 24], [32, 34], [23, 46], [41, 46]], float)


def _eyes_and_lower_maps() -> np.ndarray:
    """Two maps all on the eyes band, then one all on the lower-face band, of a 64 px face with LANDMARKS."""
    maps = np.zeros((3, 64, 64))
    maps[:2, 22:27, 18:47] = 1.0
    maps[2, 45:50, 22:43] = 1.0
    return maps


def test_band_mass_summary_keeps_fakes_and_reals_apart():
    points = np.stack([LANDMARKS] * 3)
    summary = explain.band_mass_summary(_eyes_and_lower_maps(), points, labels=["FAKE", "FAKE", "REAL"], method="m")
    assert summary["eyes_share_fake"] == pytest.approx(1.0) and summary["lower_share_fake"] == 0.0
    assert summary["eyes_share_real"] == 0.0 and summary["lower_share_real"] == pytest.approx(1.0)
    assert (summary["faces_fake"], summary["faces_real"], summary["method"]) == (2, 1, "m")
    assert "eyes_share" not in summary  # a share pooled over both classes is what this replaces
    area = explain.band_mass(np.ones((64, 64)), LANDMARKS)
    assert summary["eyes_area"] == pytest.approx(area["eyes_area"]) and summary["lower_area"] == pytest.approx(area["lower_area"])
    only_fakes = explain.band_mass_summary(_eyes_and_lower_maps()[:2], points[:2], labels=[1, 1])
    assert np.isnan(only_fakes["eyes_share_real"]) and only_fakes["faces_real"] == 0


def test_band_mass_summary_still_answers_the_old_call_without_labels():
    summary = explain.band_mass_summary(_eyes_and_lower_maps(), np.stack([LANDMARKS] * 3))
    assert summary["eyes_share"] == pytest.approx(2 / 3) and summary["lower_share"] == pytest.approx(1 / 3)
    assert set(summary) == {"eyes_share", "lower_share", "eyes_area", "lower_area"}
    assert all(isinstance(v, float) for v in summary.values())  # band_mass_table rounds every value


def _tiny_run(tmp_path, n_fake: int = 3, n_real: int = 3):
    """A meso4 run folder (model.pt as training.save_weights writes it) and split.csv-like rows of 64 px faces."""
    torch.manual_seed(0)
    model = build_model("meso4", image_size=32)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict": model.state_dict(), "model": "meso4", "image_size": 32, "model_kwargs": {},
                "variant": "full"}, run / "model.pt")
    rng = np.random.default_rng(0)
    rows = []
    for i, label in enumerate(["FAKE"] * n_fake + ["REAL"] * n_real):
        path = tmp_path / f"face{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        row = {"face_path": str(path), "label": label, "video_id": f"v{i}", "crop_x0": 0.0, "crop_y0": 0.0, "crop_side": 64.0}
        for name, (x, y) in zip(LANDMARK_NAMES, LANDMARKS):
            row[f"{name}_x"], row[f"{name}_y"] = x, y
        rows.append(row)
    return run, pd.DataFrame(rows)


def test_explain_faces_picks_both_classes_and_explains_each_by_its_label(tmp_path):
    run, faces = _tiny_run(tmp_path, n_fake=5, n_real=2)
    explained = explain.explain_faces(run, faces, n=6, seed=0)
    images, heatmaps, points = explained  # the old three-way unpacking still works
    assert images.shape == (6, 32, 32, 3) and heatmaps.shape == (6, 32, 32)
    assert list(explained.labels) == [1, 1, 1, 1, 0, 0]  # 3 + 3 wanted, reals short by one, fakes make it up
    np.testing.assert_allclose(points[0], LANDMARKS / 2)  # 64 px crop, 32 px model
    assert "features[-1]" in explained.method and "each face's class" in explained.method
    from helpers.datasets import to_tensor  # noqa: PLC0415
    from helpers.training import load_model  # noqa: PLC0415

    model, _ = load_model(run)
    batch = torch.stack([to_tensor(im) for im in images])
    np.testing.assert_allclose(heatmaps[4:], explain.grad_cam(model, batch[4:], target="real"), atol=1e-6)
    np.testing.assert_allclose(heatmaps[:4], explain.grad_cam(model, batch[:4], target="fake"), atol=1e-6)
    summary = explain.band_mass_summary(heatmaps, points, explained.labels, explained.method)
    assert (summary["faces_fake"], summary["faces_real"]) == (4, 2)


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
