"""Training input pipelines: a naive per-epoch JPEG decode against our cached FaceDataModule, side by side.

(a) naive: the ImageFolder recipe, `PIL.Image.open(path).convert("RGB")` then torchvision `Resize`,
    `ToTensor` and `Normalize` in a Dataset, every JPEG decoded again every epoch;
(b) cached: `helpers.datasets.FaceDataModule`, which decodes every crop once into a uint8 memmap (the
    build is timed on its own and reported) and then only normalises; also shown with its
    deepfake augmentation on, which the naive recipe does not do.

Both feed the same model at the same batch size with the same DataLoader settings (num_workers, no
shuffle), in one process. For each we report the loader alone (images/s over whole epochs, no model),
a training step fed by it (forward + backward + AdamW step, loading included) and the ratios; the
same step on one batch that never leaves memory is the compute bound. Loaders alone run on one torch
thread (as in a DataLoader worker); the steps on --threads. Each measurement is repeated, interleaved,
and the best kept, since other processes on the machine only ever slow a run down.

With --gpu (and CUDA), ResNet50 at 224 px under bf16 autocast: images/s of each pipeline against the
same step on synthetic GPU-resident data, and their ratio (how close the input pipeline lets the GPU
run to its compute bound).

Crops: the face crops of data/interim/02_faces/faces.csv when it exists, else synthetic 224 px JPEGs.

    python bench/training_throughput.py [--faces 512] [--image-size 128] [--model resnet50] [--steps 3]
    python bench/training_throughput.py --gpu --num-workers 8 --steps 50     # on a GPU server
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.datasets import MEAN, STD, FaceDataModule  # noqa: E402
from helpers.models import MODEL_NAMES, build_model  # noqa: E402
from helpers.runtime import cpu_count  # noqa: E402

FACES_CSV = ROOT / "data" / "interim" / "02_faces" / "faces.csv"
CROP_SIZE = 224  # what notebook 02 writes


# --- inputs -------------------------------------------------------------------------------------------

def real_crops(faces_csv: Path, n: int) -> pd.DataFrame | None:
    """Up to n usable face crops of notebook 02 (repeated if there are fewer), or None if there are none."""
    if not faces_csv.exists():
        return None
    faces = pd.read_csv(faces_csv, dtype={"video_id": str})
    faces = faces[(faces.status == "ok") & faces.face_path.notna()]
    faces = faces[[Path(p).exists() for p in faces.face_path]]
    if faces.empty:
        return None
    return faces.iloc[np.arange(n) % len(faces)][["video_id", "label", "face_path"]].reset_index(drop=True)


def synthetic_crops(folder: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """n face-sized JPEGs (smooth shading, a blob, sensor noise: sizes near real crops'), half labelled FAKE."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE].astype(np.float32) / CROP_SIZE
    rows = []
    for i in range(n):
        base = rng.uniform(60, 200, 3).astype(np.float32)
        tilt = rng.uniform(-40, 40, 2).astype(np.float32)
        image = base + (tilt[0] * xx + tilt[1] * yy)[..., None]
        cy, cx, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.15, 0.3)]
        image += 50 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)[..., None]
        image += rng.normal(0, 4, image.shape)
        path = folder / f"face_{i:05d}.jpg"
        cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        rows.append({"video_id": f"v{i // 4:05d}", "label": "FAKE" if i % 2 else "REAL", "face_path": str(path)})
    return pd.DataFrame(rows)


def write_split(crops: pd.DataFrame, path: Path) -> Path:
    """A split.csv with every crop in train (what is timed); val and test get a handful so setup accepts it."""
    split = crops.assign(split="train", group=crops.video_id, weight=1.0)
    extra = pd.concat([crops.head(4).assign(split=s) for s in ("val", "test")]).assign(group="x", weight=1.0)
    pd.concat([split, extra], ignore_index=True).to_csv(path, index=False)
    return path


# --- the two pipelines --------------------------------------------------------------------------------

class NaiveFaces(Dataset):
    """The ImageFolder recipe: open and decode the JPEG with PIL on every access, then torchvision transforms."""

    def __init__(self, paths: list[str], labels: np.ndarray, image_size: int):
        from PIL import Image  # noqa: PLC0415
        from torchvision import transforms  # noqa: PLC0415

        self.open, self.paths, self.labels = Image.open, paths, labels
        self.transform = transforms.Compose([
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
            transforms.Normalize(MEAN.tolist(), STD.tolist()),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = self.open(self.paths[index]).convert("RGB")
        return self.transform(image), torch.tensor(float(self.labels[index])), index


def loaders(split_csv: Path, cache_dir: Path, args) -> tuple[dict[str, DataLoader], float]:
    """The naive, cached and cached+augment training loaders, and the seconds the cache took to build."""
    started = time.perf_counter()
    cached = FaceDataModule(split_csv, "full", args.image_size, args.batch_size, args.num_workers, augment=False,
                            imbalance="none", cache_dir=cache_dir, seed=0)
    cached.setup()
    build_s = time.perf_counter() - started
    augmented = FaceDataModule(split_csv, "full", args.image_size, args.batch_size, args.num_workers, augment=True,
                               imbalance="none", cache_dir=cache_dir, seed=0)
    augmented.setup()  # same paths and size: reuses the cache just built
    train = cached.datasets["train"]
    naive = NaiveFaces(train.paths, train.labels, args.image_size)
    common = {"batch_size": args.batch_size, "num_workers": args.num_workers, "shuffle": False,
              "pin_memory": args.pin_memory, "persistent_workers": args.num_workers > 0}
    return {
        "naive": DataLoader(naive, **common),
        "cached": DataLoader(cached.datasets["train"], **common),
        "cached+augment": DataLoader(augmented.datasets["train"], **common),
    }, build_s


# --- measurements -------------------------------------------------------------------------------------

def loader_rate(loader: DataLoader, epochs: int) -> float:
    """Images per second over whole epochs of `loader`, no model."""
    next(iter(loader))  # warm-up: worker start, first file opens
    started, images = time.perf_counter(), 0
    for _ in range(epochs):
        for batch, _, _ in loader:
            images += len(batch)
    return images / (time.perf_counter() - started)


def batches(loader: DataLoader):
    """Batches of `loader` without end, epoch after epoch."""
    while True:
        yield from loader


def make_step(model: nn.Module, device: torch.device, autocast_dtype: torch.dtype | None):
    """One training step (forward, BCE with logits, backward, AdamW) on a batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(images).float()
        loss = loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def step_rate(step, source, steps: int, batch_size: int, device: torch.device) -> float:
    """Images per second over `steps` training steps drawing batches from `source` (after one warm-up step)."""
    images, labels, *_ = next(source)
    step(images, labels)
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        images, labels, *_ = next(source)
        step(images, labels)
    sync(device)
    return steps * batch_size / (time.perf_counter() - started)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident(batch_size: int, image_size: int, device: torch.device):
    """The compute bound's input: one batch, already on the device, forever."""
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    labels = (torch.arange(batch_size, device=device) % 2).float()
    while True:
        yield images, labels


def best_of(repeats: int, measure) -> float:
    return max(measure() for _ in range(repeats))


def training_rates(model_name: str, image_size: int, pipelines: dict[str, DataLoader], args, device: torch.device,
                   autocast_dtype: torch.dtype | None) -> dict[str, float]:
    """Training-step images/s fed by each pipeline, and by resident data (the compute bound)."""
    torch.manual_seed(0)
    model = build_model(model_name, image_size=image_size).to(device).train()
    step = make_step(model, device, autocast_dtype)
    sources = {name: batches(loader) for name, loader in pipelines.items()}
    sources["compute bound"] = resident(args.batch_size, image_size, device)
    rates = {name: [] for name in sources}
    for _ in range(args.repeats):  # interleaved, so load from other processes hits every pipeline alike
        for name, source in sources.items():
            rates[name].append(step_rate(step, source, args.steps, args.batch_size, device))
    return {name: max(r) for name, r in rates.items()}


def gpu_section(split_csv: Path, cache_dir: Path, args, device: torch.device) -> dict:
    """ResNet50 at 224 px, bf16 autocast: each pipeline against synthetic GPU-resident data."""
    gpu_args = argparse.Namespace(**{**vars(args), "image_size": 224, "pin_memory": True})
    pipelines, build_s = loaders(split_csv, cache_dir, gpu_args)
    pipelines.pop("cached+augment")
    rates = training_rates("resnet50", 224, pipelines, gpu_args, device, torch.bfloat16)
    bound = rates["compute bound"]
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
            "model": "resnet50", "image_size": 224, "precision": "bf16 autocast", "cache_build_s": build_s,
            "step_images_per_s": rates,
            "share_of_compute_bound": {k: v / bound for k, v in rates.items() if k != "compute bound"}}


# --- the run ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=512, help="training faces per epoch")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="resnet50", choices=MODEL_NAMES)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per pipeline and repeat")
    parser.add_argument("--loader-epochs", type=int, default=1, help="timed epochs per loader and repeat")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of every measurement (the best is kept)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers, the same for every pipeline")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads of the training steps (0 = every core; on a shared machine, threads "
                             "beyond the free cores make OpenMP spin-wait, 10-30x slower; 1 is the steady choice)")
    parser.add_argument("--faces-csv", type=Path, default=FACES_CSV, help="real crops to use when it exists")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic crops even if faces.csv exists")
    parser.add_argument("--gpu", action="store_true", help="also ResNet50 at 224 px, bf16, on the GPU")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "training_throughput.json")
    args = parser.parse_args(argv)
    if args.gpu and not torch.cuda.is_available():
        parser.error("--gpu needs a CUDA GPU and none is available")
    args.pin_memory = False

    with tempfile.TemporaryDirectory(prefix="training_throughput_") as tmp:
        tmp = Path(tmp)
        crops = None if args.synthetic else real_crops(args.faces_csv, args.faces)
        source = str(args.faces_csv) if crops is not None else "synthetic 224 px JPEGs"
        if crops is None:
            crops = synthetic_crops(tmp / "crops", args.faces)
        split_csv = write_split(crops, tmp / "split.csv")
        jpeg_kb = float(np.mean([Path(p).stat().st_size for p in crops.face_path])) / 1024
        print(f"{len(crops)} crops from {source} (mean JPEG {jpeg_kb:.1f} KB) at {args.image_size} px, "
              f"batch {args.batch_size}, {args.num_workers} workers; {args.model} training steps on "
              f"{args.threads or cpu_count()} torch thread(s), loaders alone on 1")

        pipelines, build_s = loaders(split_csv, tmp / "cache", args)
        print(f"cache build (decode once, all splits): {build_s:.2f} s = {len(crops) / build_s:.0f} faces/s")
        loader = {}
        torch.set_num_threads(1)  # as in a DataLoader worker, which torch runs single-threaded
        for _ in range(args.repeats):  # interleaved, best kept
            for name, dl in pipelines.items():
                loader[name] = max(loader.get(name, 0.0), loader_rate(dl, args.loader_epochs))
        torch.set_num_threads(args.threads or cpu_count())
        device = torch.device("cpu")
        steps = training_rates(args.model, args.image_size, pipelines, args, device, None)

        print(f"\n{'pipeline':<16}{'loader img/s':>14}{'x naive':>9}{'train img/s':>13}{'x naive':>9}")
        for name in pipelines:
            print(f"{name:<16}{loader[name]:>14.0f}{loader[name] / loader['naive']:>9.2f}"
                  f"{steps[name]:>13.1f}{steps[name] / steps['naive']:>9.2f}")
        print(f"{'compute bound':<16}{'':>14}{'':>9}{steps['compute bound']:>13.1f}"
              f"{steps['compute bound'] / steps['naive']:>9.2f}")
        speedup = loader["cached"] / loader["naive"]
        saved_per_epoch = len(crops) / loader["naive"] - len(crops) / loader["cached"]
        payback = build_s / saved_per_epoch if saved_per_epoch > 0 else float("inf")
        print(f"\ncached loader / naive loader: {speedup:.1f}x (target >= 5x: {'met' if speedup >= 5 else 'NOT met'}); "
              f"the build pays for itself after {payback:.1f} epochs of loading")

        gpu = None
        if args.gpu:
            gpu = gpu_section(split_csv, tmp / "cache", args, torch.device("cuda"))
            print(f"\nGPU {gpu['device']}: ResNet50 224 px bf16, training images/s")
            for name, rate in gpu["step_images_per_s"].items():
                share = gpu["share_of_compute_bound"].get(name)
                print(f"  {name:<16}{rate:>10.0f}" + (f"   {share:.0%} of the compute bound" if share else ""))

    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "crops": source, "faces": len(crops), "mean_jpeg_kb": jpeg_kb,
        "machine": {"platform": platform.platform(), "cpu_cores": cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "cache_build_s": build_s, "cache_build_faces_per_s": len(crops) / build_s,
        "loader_images_per_s": loader, "loader_ratio_to_naive": {k: v / loader["naive"] for k, v in loader.items()},
        "train_step_images_per_s": steps, "train_ratio_to_naive": {k: v / steps["naive"] for k, v in steps.items()},
        "cached_loader_speedup": speedup, "target_5x_met": speedup >= 5, "cache_payback_epochs": payback, "gpu": gpu,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
