"""Face datasets over split.csv: any face variant, deepfake-aware augmentation, a decode-once cache.

Decoding JPEGs is the slow part of a training epoch on small crops. `build_cache` decodes every crop
once, fits it to a square of `image_size`, and stores the lot as one uint8 array on disk that epochs
read through a memory map, so the CPU spends its time on augmentation and the model.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from helpers import splits

import pytorch_lightning as pl

VARIANT_COLUMNS = {"full": "face_path", "eyes": "eyes_path", "lower": "lower_path", "eyes_lower": "eyes_lower_path"}
# ImageNet statistics: what pretrained torchvision models expect, and harmless for models from scratch.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEFAULT_AUGMENT = {
    "flip": 0.5,          # probability of a horizontal flip
    "jitter": 0.2,        # max relative change of brightness, contrast and saturation
    "jpeg": 0.3,          # probability of re-compressing as JPEG ...
    "jpeg_quality": (50, 95),  # ... at a quality drawn from this range (DFDC videos are compressed)
    "blur": 0.1,          # probability of a light Gaussian blur
    "erase": 0.25,        # probability of erasing a random rectangle (cutout)
}
ERASE_FILL = tuple(int(round(255 * m)) for m in MEAN)


def variant_column(variant: str) -> str:
    """The split.csv column holding the crops of a face variant."""
    if variant not in VARIANT_COLUMNS:
        raise ValueError(f"unknown face variant {variant!r}; choose from {sorted(VARIANT_COLUMNS)}")
    return VARIANT_COLUMNS[variant]


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size keeping the aspect ratio, padding with black (band crops are wide)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if new_w == new_h == size:
        return resized
    out = np.zeros((size, size, 3), dtype=np.uint8)
    y0, x0 = (size - new_h) // 2, (size - new_w) // 2
    out[y0:y0 + new_h, x0:x0 + new_w] = resized
    return out


def load_crop(path: str, size: int) -> np.ndarray:
    """A crop file as RGB uint8, fitted to size x size; ValueError naming the file if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot be read as an image (missing or corrupt); re-run notebook 02 or drop the row")
    return fit_square(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size)


def _file_stamp(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "absent"
    return f"{st.st_size}:{st.st_mtime_ns}"


def cache_path(paths: list[str], size: int, cache_dir: str | Path) -> Path:
    """Where the cache of these crops at this size lives; the name changes with the paths, the size or the files.

    The files' sizes and modification times are part of the key: re-running notebook 02 with another
    MARGIN rewrites the same paths with other crops, and those must not be served from an old cache.
    """
    stamps = "\n".join(f"{p}\t{_file_stamp(p)}" for p in paths)
    digest = hashlib.sha1((stamps + f"\n{size}").encode()).hexdigest()[:16]
    return Path(cache_dir) / f"crops_{size}px_{len(paths)}_{digest}.npy"


def build_cache(paths: list[str], size: int, cache_dir: str | Path, threads: int = 4) -> Path:
    """Decode every crop once into a uint8 (N, size, size, 3) .npy file; reuse it when it exists."""
    target = cache_path(paths, size, cache_dir)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One partial file per process: DDP ranks (or two notebooks) building the same cache at once must
    # not truncate each other's file; each finishes its own and the atomic rename makes either the winner.
    partial = target.with_suffix(f".{os.getpid()}.partial.npy")
    array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))

    def fill(i: int) -> None:
        array[i] = load_crop(paths[i], size)  # noqa: F821 - ruff reads the later `del array` as unbinding it

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:  # cv2 releases the GIL while decoding
            list(pool.map(fill, range(len(paths))))
        array.flush()
        del array  # the memmap is closed before the rename
        partial.replace(target)  # only a complete cache ever carries the final name
    except BaseException:
        partial.unlink(missing_ok=True)  # an unreadable crop must not leave a cache-sized file behind
        raise
    return target


class Augment:
    """Deepfake-minded augmentation on RGB uint8 arrays (torchvision.transforms.v2); `config` keys as in DEFAULT_AUGMENT.

    torchvision draws from torch's global CPU generator, so each call reseeds it from `rng` (the seed,
    or the worker's, see `_seed_worker`) and restores it afterwards: the output depends on `rng` alone,
    and the process's own torch random stream is left as it was.
    """

    def __init__(self, config: dict | None = None, seed: int | None = None):
        self.config = {**DEFAULT_AUGMENT, **(config or {})}
        self.rng = np.random.default_rng(seed)
        c = self.config
        steps = [v2.RandomHorizontalFlip(c["flip"])]
        if c["jitter"]:
            steps.append(v2.ColorJitter(brightness=c["jitter"], contrast=c["jitter"], saturation=c["jitter"]))
        low, high = (int(q) for q in c["jpeg_quality"])
        steps += [
            # The deepfake-specific steps: DFDC videos are compressed and often soft, so a detector must not
            # read its evidence from JPEG-free, sharp crops.
            v2.RandomApply([v2.JPEG((low, high))], p=c["jpeg"]),
            v2.RandomApply([v2.GaussianBlur(3, sigma=(0.3, 1.2))], p=c["blur"]),
            # Cutout of 1-16% of the face, filled with the ImageNet mean: zero once normalised.
            v2.RandomErasing(c["erase"], scale=(0.01, 0.16), ratio=(0.25, 4.0), value=ERASE_FILL),
        ]
        self.transform = v2.Compose(steps)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())  # CHW, and a copy: the input is left alone
        state = torch.get_rng_state()
        try:
            # The CPU generator only: torch.manual_seed also seeds every accelerator, ~50x slower.
            torch.default_generator.manual_seed(int(self.rng.integers(2**63)))
            x = self.transform(x)
        finally:
            torch.set_rng_state(state)
        return np.ascontiguousarray(x.permute(1, 2, 0).numpy())


# (x / 255 - MEAN) / STD as one multiply-add per channel
_SCALE = torch.from_numpy(1.0 / (255.0 * STD)).view(3, 1, 1)
_SHIFT = torch.from_numpy(MEAN / STD).view(3, 1, 1)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 HWC -> normalised float CHW."""
    # Transposed while still uint8 (a quarter of the bytes), then two in-place float passes: ~5x faster than
    # numpy float maths on HWC, and this is most of what a cached epoch spends per face.
    return torch.from_numpy(image.transpose(2, 0, 1).copy()).float().mul_(_SCALE).sub_(_SHIFT)


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    """1 for FAKE, 0 for REAL."""
    labels = frame["label"].astype(str).str.upper()
    bad = sorted(set(labels) - {"REAL", "FAKE"})
    if bad:
        raise ValueError(f"labels must be REAL or FAKE, found {bad}")
    return (labels == "FAKE").to_numpy(dtype=np.int64)


class FaceDataset(Dataset):
    """Face crops of one variant with their labels; reads from a cache file when given one."""

    def __init__(self, frame: pd.DataFrame, variant: str = "full", image_size: int = 128,
                 augment: Augment | None = None, cache_file: str | Path | None = None):
        self.frame = frame.reset_index(drop=True)
        self.paths = [str(p) for p in self.frame[variant_column(variant)]]
        self.labels = labels_of(self.frame)
        self.image_size = int(image_size)
        self.augment = augment
        self.cache_file = str(cache_file) if cache_file else None
        self._cache = None  # opened lazily, so each DataLoader worker maps the file itself

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        if self.cache_file is not None:
            if self._cache is None:
                self._cache = np.load(self.cache_file, mmap_mode="r")
            return np.asarray(self._cache[index])
        return load_crop(self.paths[index], self.image_size)

    def __getitem__(self, index: int):
        image = self.image(index)
        if self.augment is not None:
            image = self.augment(image)
        return to_tensor(image), torch.tensor(float(self.labels[index])), index


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset
    if getattr(dataset, "augment", None) is not None:
        dataset.augment.rng = np.random.default_rng(info.seed % 2**32)


def read_split(split_csv: str | Path) -> pd.DataFrame:
    """split.csv as written by notebook 03, checked for the columns training needs."""
    frame = splits.read_split(split_csv)
    missing = {"split", "label", "face_path", "video_id"} - set(frame.columns)
    if missing:
        raise ValueError(f"{split_csv} lacks the columns {sorted(missing)}: is it a split.csv from notebook 03?")
    return frame


class FaceDataModule(pl.LightningDataModule):
    """train / val / test loaders over split.csv for one face variant.

    imbalance: "pos_weight" (the loss weighs the rarer class up; see `pos_weight`), "sampler" (draw
    training faces with inverse class frequency, or with split.csv's `weight` column when present) or
    "none". cache_dir: where decoded crops are cached ("" decodes JPEGs every epoch, the slow path).
    """

    def __init__(self, split_csv: str | Path, variant: str = "full", image_size: int = 128, batch_size: int = 32,
                 num_workers: int = 0, augment: bool | dict = True, imbalance: str = "pos_weight",
                 cache_dir: str | Path | None = "data/processed/cache", seed: int = 0):
        super().__init__()
        if imbalance not in ("pos_weight", "sampler", "none"):
            raise ValueError(f"imbalance must be 'pos_weight', 'sampler' or 'none', got {imbalance!r}")
        variant_column(variant)
        self.split_csv, self.variant, self.image_size = split_csv, variant, int(image_size)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.augment = DEFAULT_AUGMENT if augment is True else (augment or None)
        self.imbalance, self.cache_dir = imbalance, cache_dir
        self.frames: dict[str, pd.DataFrame] = {}
        self.datasets: dict[str, FaceDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        split = read_split(self.split_csv)
        column = variant_column(self.variant)
        if column not in split.columns or split[column].isna().all():
            raise ValueError(f"{self.split_csv} has no {column} crops: add {self.variant!r} to REGIONS in notebook 02")
        for name in ("train", "val", "test"):
            part = split[split.split == name].reset_index(drop=True)
            if len(part) == 0:
                raise ValueError(f"{self.split_csv} has no {name} rows: check the fractions in notebook 03")
            self.frames[name] = part
            cache = None
            if self.cache_dir:
                cache = build_cache([str(p) for p in part[column]], self.image_size, self.cache_dir)
            augment = Augment(self.augment, seed=self.seed) if (name == "train" and self.augment) else None
            self.datasets[name] = FaceDataset(part, self.variant, self.image_size, augment, cache)

    def loader_for(self, frame: pd.DataFrame, name: str = "eval") -> DataLoader:
        """A loader, in row order and without augmentation, over any faces of this variant (e.g. eval.csv's)."""
        column = variant_column(self.variant)
        frame = frame.reset_index(drop=True)
        cache = build_cache([str(p) for p in frame[column]], self.image_size, self.cache_dir) if self.cache_dir else None
        self.datasets[name] = FaceDataset(frame, self.variant, self.image_size, None, cache)
        self.frames[name] = frame
        return self._loader(name, shuffle=False)

    @property
    def pos_weight(self) -> float:
        """n_real / n_fake in the training split: the BCE weight that balances the classes."""
        labels = self.datasets["train"].labels
        return float((labels == 0).sum() / max((labels == 1).sum(), 1))

    def sample_weights(self) -> np.ndarray:
        frame, labels = self.frames["train"], self.datasets["train"].labels
        if "weight" in frame.columns and frame["weight"].nunique() > 1:
            return frame["weight"].to_numpy(dtype=np.float64, copy=True)  # pandas 3 hands out read-only views
        counts = np.bincount(labels, minlength=2).astype(np.float64)
        return (1.0 / np.maximum(counts, 1))[labels]

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        sampler = None
        if name == "train" and self.imbalance == "sampler":
            generator = torch.Generator().manual_seed(self.seed)
            weights = torch.as_tensor(self.sample_weights())
            sampler = WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=generator)
            shuffle = False
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.datasets[name], batch_size=self.batch_size, shuffle=shuffle, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), worker_init_fn=_seed_worker, generator=generator,
                          drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def describe(self) -> dict:
        """Sizes and class counts per split, for config.json."""
        return {name: {"faces": len(ds), "fake": int(ds.labels.sum()), "real": int((ds.labels == 0).sum())}
                for name, ds in self.datasets.items()}
