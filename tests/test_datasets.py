"""helpers.datasets on a tiny synthetic split.csv: fitting, the decode-once cache, augmentation, the DataModule."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from helpers.datasets import (
    ERASE_FILL,
    MEAN,
    STD,
    Augment,
    FaceDataModule,
    FaceDataset,
    VARIANT_COLUMNS,
    build_cache,
    cache_path,
    fit_square,
    load_crop,
    read_split,
    to_tensor,
)

NO_AUGMENT = {"flip": 0.0, "jitter": 0.0, "jpeg": 0.0, "blur": 0.0, "erase": 0.0}


def make_split(root: Path, groups: int = 10, size: int = 40, frames: int = 2, seed: int = 0) -> Path:
    """A split.csv over synthetic JPEG crops, written under `root`; FAKE faces carry a bright square.

    Each group is one REAL video and two FAKE videos made from it (so FAKE outnumbers REAL 2:1, as in
    DFDC), `frames` faces per video; the last four groups are val (2) and test (2). The eyes and lower
    crops are bands cut from the face, eyes_lower the face with everything else blacked out.
    """
    rng = np.random.default_rng(seed)
    eyes, lower = slice(size // 5, size // 2), slice(size // 2 + 2, size - 4)
    rows = []
    for g in range(groups):
        split = "train" if g < groups - 4 else ("val" if g < groups - 2 else "test")
        real = f"real{g:02d}"
        videos = ((real, "REAL", ""), (f"fake{g:02d}a", "FAKE", real), (f"fake{g:02d}b", "FAKE", real))
        for video, label, original in videos:
            for f in range(frames):
                face = np.full((size, size, 3), rng.integers(90, 170, size=3), dtype=np.float64)
                face += rng.normal(0, 12, face.shape)
                if label == "FAKE":  # the learnable signal: a blended-in patch, brighter than its surround
                    c, h = size // 2, size // 5
                    face[c - h:c + h, c - h:c + h] += 70
                face = np.clip(face, 0, 255).astype(np.uint8)
                masked = np.zeros_like(face)
                masked[eyes], masked[lower] = face[eyes], face[lower]
                stem = f"{video}_{f * 10:03d}_f0.jpg"
                paths = {}
                crops = {"face": face, "eyes": face[eyes], "lower": face[lower], "eyes_lower": masked}
                for name, crop in crops.items():
                    path = root / name / stem
                    path.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                    paths[f"{name}_path"] = str(path)
                rows.append({"video_id": video, "part": "dfdc_train_part_0", "label": label, "original": original,
                             "frame_index": f * 10, "frame_path": str(root / "frames" / stem), "face_index": 0,
                             **paths, "status": "ok", "reason": "", "group": f"g{g:02d}", "split": split,
                             "weight": 1.0})
    path = root / "split.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def split(split_csv) -> pd.DataFrame:
    return read_split(split_csv)


def _module(split_csv, tmp_path, **kwargs) -> FaceDataModule:
    settings = {"image_size": 32, "batch_size": 8, "augment": False, "cache_dir": tmp_path / "cache", **kwargs}
    data = FaceDataModule(split_csv, **settings)
    data.setup()
    return data


# --- fit_square and load_crop -------------------------------------------------------------------------

def test_fit_square_keeps_the_aspect_and_pads_with_black():
    wide = np.full((20, 40, 3), 255, dtype=np.uint8)  # an eyes band: twice as wide as high
    out = fit_square(wide, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    rows = np.flatnonzero(out.max(axis=(1, 2)) > 0)
    assert (rows.min(), rows.max()) == (8, 23)  # 16 rows of image, centred
    assert (out[:8] == 0).all() and (out[24:] == 0).all()
    assert (out[8:24] == 255).all()

    tall = fit_square(np.full((40, 10, 3), 255, dtype=np.uint8), 32)
    cols = np.flatnonzero(tall.max(axis=(0, 2)) > 0)
    assert (cols.min(), cols.max()) == (12, 19)


def test_fit_square_resizes_a_square_without_padding():
    square = np.random.default_rng(0).integers(1, 256, size=(48, 48, 3), dtype=np.uint8)
    out = fit_square(square, 32)
    assert out.shape == (32, 32, 3)
    assert (out > 0).all()
    assert fit_square(square, 48).tolist() == square.tolist()


def test_load_crop_is_rgb_and_fitted(tmp_path):
    bgr = np.zeros((10, 20, 3), dtype=np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    out = load_crop(str(path), 16)
    assert out.shape == (16, 16, 3)
    assert out[8, 8].tolist() == [200, 0, 0]


def test_load_crop_error_names_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "face.jpg"
    with pytest.raises(ValueError, match="nowhere/face.jpg"):
        load_crop(str(missing), 32)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="corrupt.jpg.*cannot be read"):
        load_crop(str(corrupt), 32)


# --- build_cache --------------------------------------------------------------------------------------

def test_cache_holds_what_direct_decoding_gives_and_is_reused(split, tmp_path):
    paths = split.face_path.tolist()[:12]
    cache = build_cache(paths, 32, tmp_path)
    array = np.load(cache, mmap_mode="r")
    assert array.shape == (12, 32, 32, 3) and array.dtype == np.uint8
    assert np.array_equal(array, np.stack([load_crop(p, 32) for p in paths]))
    assert not list(tmp_path.glob("*partial*"))

    stamp = cache.stat().st_mtime_ns
    assert build_cache(paths, 32, tmp_path) == cache
    assert cache.stat().st_mtime_ns == stamp  # reused, not rewritten
    assert len(list(tmp_path.iterdir())) == 1


def test_cache_name_changes_with_the_paths_or_the_size(split, tmp_path):
    paths = split.face_path.tolist()[:6]
    names = {cache_path(paths, 32, tmp_path), cache_path(paths, 48, tmp_path), cache_path(paths[:5], 32, tmp_path),
             cache_path(paths[::-1], 32, tmp_path), cache_path(split.eyes_path.tolist()[:6], 32, tmp_path)}
    assert len(names) == 5
    assert build_cache(paths, 32, tmp_path) == cache_path(paths, 32, tmp_path)


def test_a_failed_cache_build_leaves_nothing_behind(split, tmp_path):
    paths = split.face_path.tolist()[:4] + [str(tmp_path / "gone.jpg")]
    with pytest.raises(ValueError, match="gone.jpg"):
        build_cache(paths, 32, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # neither a .partial file nor a truncated cache


def test_to_tensor_normalises_with_imagenet_statistics():
    image = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    x = to_tensor(image)
    assert x.shape == (3, 5, 7) and x.dtype == torch.float32 and x.is_contiguous()
    expected = (image.astype(np.float64) / 255 - MEAN) / STD
    assert np.allclose(x.numpy(), expected.transpose(2, 0, 1), atol=1e-6)


# --- FaceDataset --------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["full", "eyes"])
def test_dataset_with_and_without_cache_gives_identical_tensors(split, tmp_path, variant):
    part = split[split.split == "val"]
    column = VARIANT_COLUMNS[variant]
    cache = build_cache(part[column].tolist(), 32, tmp_path)
    direct, cached = FaceDataset(part, variant, 32), FaceDataset(part, variant, 32, cache_file=cache)
    assert len(direct) == len(cached) == len(part)
    for i in range(len(part)):
        (x1, y1, i1), (x2, y2, i2) = direct[i], cached[i]
        assert x1.shape == (3, 32, 32) and x1.dtype == torch.float32
        assert torch.equal(x1, x2) and y1 == y2 and i1 == i2 == i
    assert [float(direct[i][1]) for i in range(len(part))] == (part.label == "FAKE").astype(float).tolist()


def test_dataset_refuses_unknown_labels(split):
    bad = split.head(3).assign(label=["REAL", "FAKE", "fake?"])
    with pytest.raises(ValueError, match="REAL or FAKE"):
        FaceDataset(bad)


# --- Augment ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def images(split) -> list[np.ndarray]:
    return [load_crop(p, 32) for p in split.face_path.tolist()[:8]]


def test_augment_is_deterministic_for_a_seed(images):
    config = {"flip": 0.5, "jitter": 0.2, "jpeg": 0.5, "blur": 0.5, "erase": 0.5}
    first, second, other = Augment(config, seed=3), Augment(config, seed=3), Augment(config, seed=4)
    a = [first(im) for im in images]
    b = [second(im) for im in images]
    c = [other(im) for im in images]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_augment_keeps_shape_and_dtype_and_leaves_its_input_alone(images):
    always = Augment({"flip": 1.0, "jitter": 0.3, "jpeg": 1.0, "blur": 1.0, "erase": 1.0}, seed=0)
    for image in images:
        before = image.copy()
        out = always(image)
        assert out.shape == image.shape and out.dtype == np.uint8 and out.flags.c_contiguous
        assert np.array_equal(image, before)
        assert not np.array_equal(out, image)


def test_augment_with_everything_off_is_the_identity(images):
    off = Augment(NO_AUGMENT, seed=0)
    for image in images:
        assert np.array_equal(off(image), image)


def test_a_flip_alone_mirrors_the_image(images):
    flip = Augment({**NO_AUGMENT, "flip": 1.0}, seed=0)
    assert np.array_equal(flip(images[0]), images[0][:, ::-1])


def test_augment_depends_on_its_seed_alone_and_leaves_torch_random_state_alone(images):
    # torchvision draws from torch's global generator; Augment must neither follow nor move it.
    config = {"flip": 0.5, "jitter": 0.2, "jpeg": 0.5, "blur": 0.5, "erase": 0.5}
    torch.manual_seed(1)
    a = [Augment(config, seed=3)(im) for im in images]
    torch.manual_seed(2)
    state = torch.get_rng_state()
    b = [Augment(config, seed=3)(im) for im in images]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_each_dataloader_worker_augments_differently_and_reproducibly(split):
    # Eight copies of one face: any difference between two batches is the augmentation's.
    from helpers.datasets import _seed_worker

    part = split.head(1).loc[[split.index[0]] * 8]
    dataset = FaceDataset(part, "full", 32, Augment({"flip": 0.5, "jitter": 0.3, "erase": 0.5}, seed=0))

    def batches(seed: int) -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, worker_init_fn=_seed_worker,
                                             generator=torch.Generator().manual_seed(seed))
        return [x for x, _, _ in loader]

    first, again, other = batches(0), batches(0), batches(1)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], first[1])  # batches 0 and 1 come from different workers
    assert not all(torch.equal(x, y) for x, y in zip(first, other))


def test_erase_fills_a_rectangle_of_one_to_sixteen_percent_with_the_mean_colour(images):
    erase = Augment({**NO_AUGMENT, "erase": 1.0}, seed=0)
    for image in images:
        changed = (erase(image) != image).any(axis=2)
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        h, w = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert 0.005 <= h * w / changed.size <= 0.17, (h, w)
    fill = Augment({**NO_AUGMENT, "erase": 1.0}, seed=0)(np.zeros((32, 32, 3), np.uint8))
    assert {tuple(px) for px in fill.reshape(-1, 3)} == {(0, 0, 0), ERASE_FILL}


def test_jpeg_and_blur_alone_change_the_face_only_a_little(images):
    for step in ("jpeg", "blur"):
        out = Augment({**NO_AUGMENT, step: 1.0}, seed=0)(images[0])
        diff = np.abs(out.astype(int) - images[0].astype(int))
        assert 0 < diff.mean() < 12, step


# --- FaceDataModule -----------------------------------------------------------------------------------

def test_datamodule_sizes_and_pos_weight(split_csv, split, tmp_path):
    data = _module(split_csv, tmp_path)
    for name in ("train", "val", "test"):
        assert len(data.datasets[name]) == (split.split == name).sum()
    train = split[split.split == "train"]
    n_real, n_fake = (train.label == "REAL").sum(), (train.label == "FAKE").sum()
    assert n_fake == 2 * n_real
    assert data.pos_weight == pytest.approx(n_real / n_fake)
    assert data.describe()["train"] == {"faces": len(train), "fake": n_fake, "real": n_real}
    images, labels, index = next(iter(data.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and labels.shape == (8,) and index.shape == (8,)
    assert len(list(data.cache_dir.glob("*.npy"))) == 3  # one cache per split
    assert not list(data.cache_dir.glob("*partial*"))


def test_datamodule_without_cache_reads_the_same_faces(split_csv, tmp_path):
    cached, direct = _module(split_csv, tmp_path), _module(split_csv, tmp_path, cache_dir="")
    assert direct.datasets["test"].cache_file is None
    x1, y1, _ = next(iter(cached.test_dataloader()))
    x2, y2, _ = next(iter(direct.test_dataloader()))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_datamodule_augments_training_faces_only(split_csv, tmp_path):
    data = _module(split_csv, tmp_path, augment={"flip": 1.0})
    assert data.datasets["train"].augment is not None
    assert data.datasets["val"].augment is None and data.datasets["test"].augment is None
    assert data.datasets["train"].augment.config["flip"] == 1.0


def test_sampler_draws_the_minority_class_as_often_as_the_majority(split_csv, tmp_path):
    data = _module(split_csv, tmp_path, imbalance="sampler", seed=1)
    loader = data.train_dataloader()
    labels = data.datasets["train"].labels
    assert labels.mean() == pytest.approx(2 / 3)
    drawn = np.concatenate([labels[list(loader.sampler)] for _ in range(100)])  # 100 epochs of draws
    assert len(drawn) == 100 * len(labels)
    assert drawn.mean() == pytest.approx(0.5, abs=0.04)


def test_sampler_follows_the_weight_column_when_it_varies(split_csv, tmp_path):
    frame = pd.read_csv(split_csv)
    frame["weight"] = np.where(frame.label == "FAKE", 0.0, 1.0)  # only REAL faces may be drawn
    weighted = tmp_path / "weighted.csv"
    frame.to_csv(weighted, index=False)
    data = _module(weighted, tmp_path, imbalance="sampler")
    labels = data.datasets["train"].labels
    assert not labels[list(data.train_dataloader().sampler)].any()


def test_datamodule_errors_are_clear(split_csv, split, tmp_path):
    with pytest.raises(ValueError, match="unknown face variant 'nose'"):
        FaceDataModule(split_csv, variant="nose")
    with pytest.raises(ValueError, match="imbalance"):
        FaceDataModule(split_csv, imbalance="oversample")
    with pytest.raises(FileNotFoundError, match="missing.csv.*notebook 03"):
        _module(tmp_path / "missing.csv", tmp_path)

    no_eyes = tmp_path / "no_eyes.csv"
    split.drop(columns=["eyes_path"]).to_csv(no_eyes, index=False)
    with pytest.raises(ValueError, match="no_eyes.csv has no eyes_path crops"):
        _module(no_eyes, tmp_path, variant="eyes")

    no_test = tmp_path / "no_test.csv"
    split[split.split != "test"].to_csv(no_test, index=False)
    with pytest.raises(ValueError, match="no_test.csv has no test rows"):
        _module(no_test, tmp_path)

    not_a_split = tmp_path / "faces.csv"
    split.drop(columns=["split"]).to_csv(not_a_split, index=False)
    with pytest.raises(ValueError, match="lacks the columns \\['split'\\]"):
        _module(not_a_split, tmp_path)
