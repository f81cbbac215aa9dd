"""Our PyTorch MesoNet, given the authors' published weights, computes what their Keras model computes.

The Keras side is rebuilt from the authors' `classifiers.py` (github.com/DariusAf/MesoNet) with the
Keras 3 functional API and loads each .h5 with Keras's own `model.load_weights`: Keras 3 still reads
Keras 2 weights-only HDF5 files (matching layers by topological order), so the reference shares no
code with `helpers.models.load_keras_weights`. Their sigmoid is P(REAL); ours is P(FAKE), so our
logit must be minus theirs and our probability 1 - theirs.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.models import build_model, load_keras_weights
from helpers.models.mesonet import KerasMaxPool2d

WEIGHT_FILES = {
    "Meso4_DF": "meso4",
    "Meso4_F2F": "meso4",
    "MesoInception_DF": "mesoinception4",
    "MesoInception_F2F": "mesoinception4",
}


@pytest.fixture(scope="module")
def keras():
    """Keras 3 on TensorFlow, imported quietly."""
    try:
        from helpers.runtime import import_tensorflow  # noqa: PLC0415

        import_tensorflow(threads=2)
        import keras  # noqa: PLC0415
    except ImportError as exc:
        pytest.skip(f"TensorFlow/Keras is not installed: {exc}")
    return keras


def _conv_block(keras, x, filters: int, kernel: int, pool: int):
    """Conv2D('same', relu) -> BatchNormalization -> MaxPooling2D('same'), as in the authors' code."""
    layers = keras.layers
    x = layers.Conv2D(filters, (kernel, kernel), padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    return layers.MaxPooling2D(pool_size=(pool, pool), padding="same")(x)


def _inception(keras, x, a: int, b: int, c: int, d: int):
    """The authors' InceptionLayer(a, b, c, d)."""
    conv = keras.layers.Conv2D
    x1 = conv(a, (1, 1), padding="same", activation="relu")(x)
    x2 = conv(b, (1, 1), padding="same", activation="relu")(x)
    x2 = conv(b, (3, 3), padding="same", activation="relu")(x2)
    x3 = conv(c, (1, 1), padding="same", activation="relu")(x)
    x3 = conv(c, (3, 3), dilation_rate=2, strides=1, padding="same", activation="relu")(x3)
    x4 = conv(d, (1, 1), padding="same", activation="relu")(x)
    x4 = conv(d, (3, 3), dilation_rate=3, strides=1, padding="same", activation="relu")(x4)
    return keras.layers.Concatenate(axis=-1)([x1, x2, x3, x4])


def keras_mesonet(keras, variant: str, image_size: int = 256):
    """Meso4 or MesoInception4 exactly as the authors' Keras code builds it."""
    layers = keras.layers
    inputs = keras.Input(shape=(image_size, image_size, 3))
    if variant == "meso4":
        x = _conv_block(keras, inputs, 8, 3, 2)
        x = _conv_block(keras, x, 8, 5, 2)
    else:
        x = _inception(keras, inputs, 1, 4, 4, 2)
        x = layers.MaxPooling2D(pool_size=(2, 2), padding="same")(layers.BatchNormalization()(x))
        x = _inception(keras, x, 2, 4, 4, 2)
        x = layers.MaxPooling2D(pool_size=(2, 2), padding="same")(layers.BatchNormalization()(x))
    x = _conv_block(keras, x, 16, 5, 2)
    x = _conv_block(keras, x, 16, 5, 4)
    y = layers.Flatten()(x)
    y = layers.Dropout(0.5)(y)
    y = layers.Dense(16)(y)
    y = layers.LeakyReLU(negative_slope=0.1)(y)
    y = layers.Dropout(0.5)(y)
    y = layers.Dense(1, activation="sigmoid")(y)
    return keras.Model(inputs=inputs, outputs=y)


def _flatten(keras, model):
    """The Flatten layer of a Keras MesoNet."""
    return next(layer for layer in model.layers if isinstance(layer, keras.layers.Flatten))


@pytest.fixture(scope="module")
def images(shared_data) -> np.ndarray:
    """Four 256x256 RGB images in [0, 1] (the authors rescale by 1/255): two face photos, two noise."""
    from PIL import Image  # noqa: PLC0415

    faces = [
        np.asarray(Image.open(shared_data / "faces" / name).convert("RGB").resize((256, 256)), dtype=np.float32) / 255
        for name in ("img12.jpg", "img25.jpg")
    ]
    # Noise alone saturates MesoInception's sigmoid at 1.0, where a wrong layer could hide; faces do not.
    noise = list(np.random.default_rng(0).random((2, 256, 256, 3), dtype=np.float32))
    return np.stack(faces + noise)


def _torch_outputs(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channels-last flattened features and logits of our model, in eval mode."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.no_grad():
        features = model.features(x)
        logits = model.classifier(features)
    return features.permute(0, 2, 3, 1).reshape(len(images), -1).numpy(), logits.numpy()


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("stem", WEIGHT_FILES)
def test_pytorch_mesonet_matches_keras(keras, shared_data, images, stem):
    path = shared_data / "models" / "mesonet" / f"{stem}.h5"
    variant = WEIGHT_FILES[stem]
    reference = keras_mesonet(keras, variant)
    reference.load_weights(str(path))
    probe = keras.Model(reference.input, [_flatten(keras, reference).output, reference.layers[-1].input, reference.output])
    k_features, k_hidden, k_prob = (np.asarray(a) for a in probe(images, training=False))
    kernel, bias = reference.layers[-1].get_weights()
    k_logits = (k_hidden @ kernel + bias)[:, 0]

    model = load_keras_weights(build_model(variant, image_size=256), path).eval()
    features, logits = _torch_outputs(model, images)

    np.testing.assert_allclose(features, k_features, atol=1e-4, rtol=1e-4)
    # Logits can be ~90 on noise, so compare them relatively; probabilities absolutely.
    np.testing.assert_allclose(logits, -k_logits, rtol=1e-5, atol=1e-4)
    p_fake = torch.sigmoid(torch.from_numpy(logits)).numpy()
    np.testing.assert_allclose(p_fake, 1 - k_prob[:, 0], atol=1e-4)
    if stem == "Meso4_DF":  # the face photos are real, and the authors' Meso4_DF says so (P(REAL) > 0.5)
        assert (k_prob[:2, 0] > 0.5).all() and (p_fake[:2] < 0.5).all()


def _write_keras2_h5(path, layers: dict[str, dict[str, np.ndarray]]) -> None:
    """A Keras 2 weights-only HDF5 file (what model.save_weights wrote) holding `layers` in that order."""
    import h5py  # noqa: PLC0415

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        for name, arrays in layers.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{key}:0".encode() for key in arrays]
            for key, array in arrays.items():
                group.create_dataset(f"{name}/{key}:0", data=array)


def test_loaded_mesonet_outputs_the_fake_logit_minus_the_files_real_logit(tmp_path):
    rng = np.random.default_rng(0)
    layers = {}
    for i, (k, cin, cout) in enumerate([(3, 3, 8), (5, 8, 8), (5, 8, 16), (5, 16, 16)], start=1):
        layers[f"conv2d_{i}"] = {"kernel": rng.normal(0, 0.3, (k, k, cin, cout)), "bias": rng.normal(0, 0.1, cout)}
        layers[f"batch_normalization_{i}"] = {"gamma": rng.uniform(0.5, 1.5, cout), "beta": rng.normal(0, 0.1, cout),
                                              "moving_mean": rng.normal(0, 0.1, cout), "moving_variance": rng.uniform(0.5, 1.5, cout)}
    layers["dense_1"] = {"kernel": rng.normal(0, 0.5, (16, 16)), "bias": rng.normal(0, 0.1, 16)}
    layers["dense_2"] = {"kernel": rng.normal(0, 0.5, (16, 1)), "bias": np.array([0.3])}
    path = tmp_path / "tiny_meso4.h5"
    _write_keras2_h5(path, {name: {k: v.astype(np.float32) for k, v in arrays.items()} for name, arrays in layers.items()})

    model = load_keras_weights(build_model("meso4", image_size=32), path).eval()
    x = torch.from_numpy(rng.random((5, 3, 32, 32), dtype=np.float32))
    with torch.no_grad():
        hidden = model.classifier[:-1](model.features(x)).numpy()  # the 16 LeakyReLU outputs the last Dense reads
        logits = model(x).numpy()
    file_logits = (hidden @ layers["dense_2"]["kernel"] + layers["dense_2"]["bias"])[:, 0]  # the file's: REAL
    np.testing.assert_allclose(logits, -file_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(logits)).numpy(),
                               1 - torch.sigmoid(torch.from_numpy(file_logits)).numpy(), atol=1e-6)
    # Only the output layer is negated: the hidden Dense keeps the file's orientation.
    np.testing.assert_allclose(model.classifier[2].weight.detach().numpy(), layers["dense_1"]["kernel"].T, rtol=1e-6)


@pytest.mark.realdata
def test_loader_names_the_file_on_a_variant_mismatch(shared_data):
    path = shared_data / "models" / "mesonet" / "MesoInception_DF.h5"
    with pytest.raises(ValueError, match=r"MesoInception_DF\.h5 has 16 conv2d layers but Meso4 has 4"):
        load_keras_weights(build_model("meso4", image_size=256), path)


@pytest.mark.realdata
def test_loader_suggests_the_image_size(shared_data):
    path = shared_data / "models" / "mesonet" / "Meso4_DF.h5"
    with pytest.raises(ValueError, match=r"Meso4_DF\.h5 layer dense_3.*image_size=256"):
        load_keras_weights(build_model("meso4", image_size=128), path)


@pytest.mark.slow
def test_same_pooling_and_flatten_size_match_keras_at_odd_sizes(keras):
    # Keras pads 'same' pooling on both sides (smaller half first); PyTorch's ceil_mode pads only the end.
    rng = np.random.default_rng(1)
    for size in (5, 6, 7, 13, 25):
        for pool in (2, 4):
            x = rng.standard_normal((2, size, size + 1, 3)).astype(np.float32)
            expected = np.asarray(keras.layers.MaxPooling2D(pool_size=(pool, pool), padding="same")(x))
            got = KerasMaxPool2d(pool)(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
            np.testing.assert_array_equal(got, expected, err_msg=f"size {size}x{size + 1}, pool {pool}")
    for variant in ("meso4", "mesoinception4"):
        for size in (64, 96, 200):
            flat = _flatten(keras, keras_mesonet(keras, variant, size)).output.shape[-1]
            assert flat == np.prod(build_model(variant, image_size=size).feature_shape), (variant, size)
