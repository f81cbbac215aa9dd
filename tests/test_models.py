"""build_model: one test over every architecture (shape, finiteness, gradients), plus the factory's edges."""
from __future__ import annotations

import pytest
import torch

from helpers.models import MODEL_NAMES, PretrainedWeightsMissing, build_model, pretrained_weights_path

# Each architecture shrunk to what still exercises its real code path on two CPU cores.
CASES: dict[str, dict] = {
    "vit": {"image_size": 64, "depth": 2},  # tiny preset (dim 192, 3 heads), 16 patches + class token
    "resnet50": {"image_size": 64},
    "resnet101": {"image_size": 32},
    "vgg19": {"image_size": 32},
    "meso4": {"image_size": 96},  # 96 is not a multiple of 32: the last pool sees a 12 -> 3 side
    "mesoinception4": {"image_size": 64},
}


def _build(name: str, **extra) -> tuple[torch.nn.Module, int]:
    """The CASES configuration of `name`, and its image size."""
    kwargs = {**CASES[name], **extra}
    size = kwargs.pop("image_size")
    return build_model(name, image_size=size, **kwargs), size


def test_every_model_has_a_case():
    assert set(CASES) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_forward_and_backward(name):
    torch.manual_seed(0)
    model, size = _build(name)
    model.train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2,)
    assert torch.isfinite(out).all()
    out.sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {pname} has a non-finite gradient"


@pytest.mark.parametrize("name", ["vit", "meso4", "mesoinception4"])
def test_build_is_deterministic_for_a_seed(name):
    x = torch.rand(2, 3, CASES[name]["image_size"], CASES[name]["image_size"])
    outputs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        model, _ = _build(name)
        with torch.no_grad():
            outputs.append(model.eval()(x))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


def test_batch_of_one_keeps_its_batch_dimension():
    model, size = _build("meso4")
    assert model.eval()(torch.rand(1, 3, size, size)).shape == (1,)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet18'") as err:
        build_model("resnet18")
    assert all(name in str(err.value) for name in MODEL_NAMES)


def test_misspelt_keyword_is_refused():
    with pytest.raises(TypeError, match="deph"):
        build_model("vit", image_size=64, deph=2)


def test_vit_image_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match="patch_size 16"):
        build_model("vit", image_size=70, depth=1)


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "vgg19"])
def test_missing_pretrained_weights_fail_offline_with_directions(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsMissing) as err:
        build_model(name, image_size=32, pretrained=True, allow_download=False)
    expected = tmp_path / "hub" / "checkpoints" / err.value.filename
    assert err.value.path == expected
    message = str(err.value)
    for part in (err.value.filename, str(expected), err.value.url, "PRETRAINED=False"):
        assert part in message
    assert isinstance(err.value, RuntimeError)


def test_corrupt_cached_weights_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision  # noqa: PLC0415

    path = pretrained_weights_path(torchvision.models.ResNet50_Weights.IMAGENET1K_V2)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsMissing, match="could not read the cached file"):
        build_model("resnet50", pretrained=True, allow_download=False)


def test_cached_pretrained_weights_are_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision  # noqa: PLC0415

    # Stand-in "ImageNet" weights: a seeded resnet50 written where the hub cache keeps the real file.
    torch.manual_seed(1)
    reference = torchvision.models.resnet50(weights=None)
    path = pretrained_weights_path(torchvision.models.ResNet50_Weights.IMAGENET1K_V2)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = build_model("resnet50", pretrained=True, allow_download=False)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert torch.equal(model.layer4[-1].bn3.running_var, reference.layer4[-1].bn3.running_var)
    assert model.fc.out_features == 1


@pytest.mark.parametrize("name", ["resnet50", "resnet101"])
def test_a_resnet_from_scratch_starts_each_residual_branch_at_zero(name):
    model = build_model(name, image_size=32)
    blocks = [block for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for block in layer]
    assert blocks and all(torch.count_nonzero(block.bn3.weight) == 0 for block in blocks)
    assert torch.count_nonzero(model.bn1.weight) > 0  # the stem and the other BatchNorms start at one
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert all(block.bn3.weight.grad is not None and torch.count_nonzero(block.bn3.weight.grad) > 0
               for block in blocks)  # the zeroed gammas still learn


def test_vit_records_attention_maps():
    model, size = _build("vit")
    model.eval()
    x = torch.rand(2, 3, size, size)
    model(x)
    assert all(block.attn.last_attention is None for block in model.blocks)
    model.keep_attention = True
    model(x)
    maps = model.attention_maps()
    tokens = (size // 16) ** 2 + 1
    assert len(maps) == 2
    for attn in maps:
        assert attn.shape == (2, 3, tokens, tokens)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, tokens))
    assert model.blocks[0].attn.last_attention is maps[0]


def test_vgg19_has_a_global_pooled_head_by_default_and_the_original_classifier_on_request():
    pooled = build_model("vgg19", image_size=32)
    original = build_model("vgg19", image_size=32, head="classifier")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(pooled) < 21e6 < 139e6 < count(original)
    x = torch.randn(2, 3, 48, 48)
    assert pooled(x).shape == (2,) and original(x).shape == (2,)
    with pytest.raises(ValueError, match="head"):
        build_model("vgg19", head="dense")
    with pytest.raises(TypeError, match="head"):
        build_model("resnet50", head="pooled")
