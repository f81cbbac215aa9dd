"""Training and evaluation: a LightningModule for every model, and `fit_and_test`, which leaves a run folder.

A run folder holds everything the results notebook reads:
    config.json       the full configuration (and the dataset sizes)
    history.csv       per epoch: train and val loss / accuracy / AUC (and more for val)
    predictions.csv   per face of val and test: face_path, video_id, group, label, logit, prob_raw,
                      prob_fake (calibrated on val), split; the faces of eval.csv when notebook 03 wrote
                      one (many frames per held-out video), else split.csv's val and test faces
    val_probs.npy     the validation faces' P(FAKE) after every epoch (how stable the calls are)
    metrics.json      test metrics at frame and video level with 95% group-bootstrap intervals, the
                      majority-class baseline, and the calibration and threshold fitted on val
                      (helpers.protocol.evaluate_predictions)
    model.pt          the best weights as a plain state dict (loads with torch.load(weights_only=True))
    checkpoints/      Lightning checkpoints: best (by val/auc) and last (for RESUME)

Run names: an empty `run_name` becomes `<model>-<variant>-s<seed>`. Such a derived name never replaces
a finished run trained with other settings (RUN_SETTINGS): `make_config` refuses (RunNameTaken),
naming what differs and suggesting a RUN_NAME, so a re-run of notebook 04 or 05 with another setting
keeps the earlier run. Rerunning the same settings under the same name trains the run again in its
folder (RESUME continues it instead); a name given explicitly (RUN_NAME, the crop study's
`crop-<model>-<variant>-s<seed>`) is the caller's to reuse, as before.

From a shell, which is how multi-GPU and multi-node runs go (DDP cannot run inside a notebook kernel):
    python -m helpers.training --config run.yaml [--set epochs=3 devices=4]
    python -m helpers.training --set model=vit split_csv=... --dump > run.yaml   # write a run.yaml
Under SLURM, `srun python -m helpers.training --config run.yaml --set devices=4 num_nodes=2` (one task
per GPU; Lightning reads the ranks from SLURM's environment): see scripts/slurm/train.sbatch.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torchmetrics
import yaml
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from helpers import metrics as M
from helpers import protocol
from helpers.datasets import FaceDataModule
from helpers.models import build_model
from helpers.runtime import cpu_count, headless

logger = logging.getLogger("helpers.training")  # not __name__: under `python -m` that is __main__, outside the helpers logger

DEFAULTS: dict = {
    "split_csv": "data/interim/03_split/split.csv",
    "out_dir": "data/processed/runs",
    "run_name": "",              # default: <model>-<variant>-s<seed>
    "model": "vit",
    "model_kwargs": {},          # e.g. {"size": "tiny", "depth": 6, "patch_size": 8} for the ViT
    "variant": "full",           # full | eyes | lower | eyes_lower
    "image_size": 128,
    "epochs": 10,
    "batch_size": 32,
    "lr": 3e-4,
    "weight_decay": 0.05,
    "optimizer": "adamw",        # adamw | adam
    "schedule": "cosine",        # cosine (decay to 0 after warm-up) | constant
    "warmup_epochs": 1.0,
    "grad_clip": 1.0,            # 0 disables gradient clipping
    "pretrained": False,
    "augment": True,
    "imbalance": "pos_weight",   # pos_weight | sampler | none
    "accelerator": "auto",       # auto | cpu | gpu
    "devices": 1,
    "num_nodes": 1,
    "strategy": "auto",          # auto picks ddp when devices * num_nodes > 1
    "precision": "auto",         # auto: bf16-mixed (or 16-mixed) on GPU, 32-true on CPU
    "seed": 0,
    "early_stopping": 0,         # patience in epochs on val/auc, 0 = off
    "resume": False,
    "num_workers": 0,
    "cache_dir": "data/processed/cache",  # "" decodes JPEGs every epoch
    "limit_train_batches": 1.0,
    "n_boot": 1000,
    "threads": 0,                # CPU threads for torch, 0 = every core
    "deterministic": True,       # same seed, same run (GPU ops without a deterministic kernel only warn)
}


# The settings that make two runs different experiments: a derived run name is refused when its folder
# holds a finished run whose config.json differs on any of them (devices, workers, n_boot... do not count).
RUN_SETTINGS = ("split_csv", "model", "model_kwargs", "variant", "seed", "image_size", "epochs", "batch_size", "lr",
                "optimizer", "schedule", "weight_decay", "warmup_epochs", "grad_clip", "pretrained", "augment",
                "imbalance", "early_stopping", "limit_train_batches")


class RunNameTaken(ValueError):
    """A derived run name whose folder holds a finished run trained with other settings (set RUN_NAME)."""


def make_config(**overrides) -> dict:
    """DEFAULTS updated with `overrides`; unknown keys are refused.

    An empty run_name becomes `<model>-<variant>-s<seed>`, and RunNameTaken is raised when that folder
    holds a finished run trained with other settings (see the module docstring).
    """
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    config = {**DEFAULTS, **overrides}
    if not config["run_name"]:
        config["run_name"] = f"{config['model']}-{config['variant']}-s{config['seed']}"
        refuse_other_run(config)
    return config


def _plain(value):
    """A setting as config.json stores it (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def other_settings(config: dict, run_dir: str | Path) -> list[tuple[str, object, object]]:
    """(setting, value there, value now) for each RUN_SETTINGS key on which a run folder's config.json differs."""
    saved = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    return [(key, saved.get(key, DEFAULTS[key]), config.get(key)) for key in RUN_SETTINGS
            if _plain(saved.get(key, DEFAULTS[key])) != _plain(config.get(key))]


def suggest_run_name(config: dict, changes: list[tuple[str, object, object]]) -> str:
    """The derived name with the changed settings appended, e.g. vit-full-s0-epochs3-lr0.001."""
    parts = []
    for key, _, now in changes:
        if isinstance(now, (dict, list)) or key == "split_csv":
            parts.append(key.replace("_", ""))
        else:
            parts.append(f"{key.replace('_', '')}{now}".replace("/", "-"))
    return "-".join([config["run_name"], *parts])[:80]


def refuse_other_run(config: dict) -> None:
    """Raise RunNameTaken when config's run folder holds a finished run trained with other settings."""
    run_dir = run_dir_of(config)
    if not ((run_dir / "metrics.json").is_file() and (run_dir / "config.json").is_file()):
        return  # nothing finished to lose: an interrupted run is continued (RESUME) or started again
    try:
        changes = other_settings(config, run_dir)
    except (OSError, ValueError) as err:
        raise RunNameTaken(f"{run_dir / 'config.json'} cannot be read ({err}), so the finished run in {run_dir} may "
                           "have other settings. It is kept: set RUN_NAME to give this run its own folder, or delete "
                           f"{run_dir} to train this one in its place") from None
    if changes:
        described = "; ".join(f"{key} {then!r} there, {now!r} now" for key, then, now in changes)
        raise RunNameTaken(
            f"{run_dir} holds a finished run trained with other settings ({described}). It is kept: set RUN_NAME "
            f"to give this run its own folder (e.g. RUN_NAME = \"{suggest_run_name(config, changes)}\"; results "
            f"notebook 07 then shows both), or delete {run_dir} to train this one in its place")


def vit_kwargs(size: str = "tiny", patch_size: int = 0, depth: int = 0, heads: int = 0, dim: int = 0) -> dict:
    """ViT shape settings for build_model: a size preset, with any non-zero value overriding it."""
    overrides = {"patch_size": patch_size, "depth": depth, "heads": heads, "dim": dim}
    return {"size": size, **{k: int(v) for k, v in overrides.items() if v}}


def run_dir_of(config: dict) -> Path:
    return Path(config["out_dir"]) / config["run_name"]


@rank_zero_only
def tell(message: str, level: int = logging.INFO) -> None:
    """Log a message once per DDP job, on global rank 0 only.

    Not Lightning's rank_zero_info / rank_zero_warn: the first logs on Lightning's own logger (which
    quiet_lightning keeps at WARNING), the second makes a Python warning; this stays on helpers.training.
    """
    logger.log(level, message)


def resume_from(config: dict, last: Path) -> bool:
    """Whether this run continues from last.ckpt; says so, or why RESUME starts it from epoch 1 after all."""
    if not config["resume"]:
        return False
    if last.exists():
        tell(f"{config['run_name']}: RESUME continues from {last}")
        return True
    tell(f"{config['run_name']}: RESUME is on, but {last} does not exist: the run starts from epoch 1",
         logging.WARNING)
    return False


def detection_metrics(prefix: str) -> torchmetrics.MetricCollection:
    """accuracy, balanced accuracy, AUC, log loss and EER, logged as `<prefix>/acc`, ...

    The logged EER is torchmetrics' BinaryEER: the mean of FPR and FNR at the ROC point where they are closest.
    metrics.json's `eer` (helpers.metrics) interpolates to where they are equal, so on few faces the two can
    differ by up to half an ROC step (0.04 on 5 REAL faces in tests/test_training.py).
    """
    return torchmetrics.MetricCollection({
        "acc": torchmetrics.classification.BinaryAccuracy(),
        "bal_acc": torchmetrics.classification.MulticlassAccuracy(num_classes=2, average="macro"),
        "auc": torchmetrics.classification.BinaryAUROC(),
        "eer": torchmetrics.classification.BinaryEER(),
    }, prefix=f"{prefix}/")


class DetectorModule(pl.LightningModule):
    """A binary FAKE/REAL detector: BCE with logits, AdamW/Adam, warm-up then cosine decay (or constant)."""

    def __init__(self, model: str = "vit", image_size: int = 128, model_kwargs: dict | None = None,
                 pretrained: bool = False, lr: float = 3e-4, weight_decay: float = 0.05, optimizer: str = "adamw",
                 warmup_epochs: float = 1.0, pos_weight: float = 1.0, schedule: str = "cosine"):
        super().__init__()
        if optimizer not in ("adamw", "adam"):
            raise ValueError(f"optimizer must be 'adamw' or 'adam', got {optimizer!r}")
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
        self.save_hyperparameters()
        self.model = build_model(model, image_size=image_size, pretrained=pretrained, **(model_kwargs or {}))
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))
        self.train_metrics = detection_metrics("train")
        self.val_metrics = detection_metrics("val")
        self._val_probs: list[torch.Tensor] = []
        self.val_epoch_probs: list[np.ndarray] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).reshape(-1)

    def _step(self, batch, collection: torchmetrics.MetricCollection, prefix: str):
        images, labels, _ = batch
        logits = self(images).float()
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=self.pos_weight)
        probs = torch.sigmoid(logits.detach())
        if prefix == "val" and self._trainer is not None and self.trainer.world_size == 1:
            self._val_probs.append(probs.cpu())
        collection["acc"].update(probs, labels.long())
        collection["bal_acc"].update(torch.stack([1 - probs, probs], dim=1), labels.long())
        collection["auc"].update(probs, labels.long())
        collection["eer"].update(probs, labels.long())
        # log loss without the class weight: the metric DFDC was scored on
        log_loss = nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), labels)
        self.log(f"{prefix}/loss", loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        self.log(f"{prefix}/log_loss", log_loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, self.train_metrics, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_metrics, "val")

    def save_val_probs(self, path: Path) -> None:
        """val_probs.npy: (epochs, val faces) P(FAKE), in split.csv's val order (single-device runs).

        A fixed validation set makes consecutive epochs' accuracies correlated, so their wiggles are
        not independent binomial draws; the share of faces whose call flips between epochs is what
        actually moved (helpers.results.call_flips).
        """
        if self.val_epoch_probs and len({len(e) for e in self.val_epoch_probs}) == 1:
            np.save(path, np.stack(self.val_epoch_probs))

    def _log_epoch(self, collection: torchmetrics.MetricCollection) -> None:
        # AUC and EER are undefined on a batch with one class; compute over the epoch, then reset.
        values = collection.compute()
        self.log_dict({k: v.float() for k, v in values.items()}, sync_dist=True)
        collection.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch(self.train_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics)
        if self._val_probs and not self.trainer.sanity_checking:
            self.val_epoch_probs.append(torch.cat(self._val_probs).numpy().astype(np.float32))
        self._val_probs = []

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            # norms, biases and embeddings are not weight-decayed (the usual ViT recipe)
            (no_decay if param.ndim <= 1 or "pos_embed" in name or "cls_token" in name else decay).append(param)
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = (torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam)(groups, lr=hp.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = min(total - 1, int(round(hp.warmup_epochs * total / epochs))) if total > 1 else 0

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if hp.schedule == "constant":
                return 1.0
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def resolve_precision(precision: str, accelerator: str) -> str:
    """'auto' -> bf16-mixed on GPUs that have it, 16-mixed on older GPUs, 32-true on the CPU."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not on_gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def history_from_log(metrics_csv: Path) -> pd.DataFrame:
    """One row per epoch from Lightning's CSV log (which writes train and val values on separate rows)."""
    log = pd.read_csv(metrics_csv)
    keep = [c for c in log.columns if c.startswith(("train/", "val/"))]
    history = log.groupby("epoch")[keep].first().reset_index()
    return history


def restore_earlier_epochs(earlier: pd.DataFrame, metrics_csv: Path) -> None:
    """Put the epochs logged before a resume back in front of the resumed log, which CSVLogger started afresh."""
    later = pd.read_csv(metrics_csv) if metrics_csv.exists() and metrics_csv.stat().st_size else earlier.iloc[:0]
    first = later["epoch"].min() if len(later) else np.inf
    merged = pd.concat([earlier[earlier["epoch"] < first], later], ignore_index=True)
    metrics_csv.parent.mkdir(parents=True, exist_ok=True)
    merged.to_csv(metrics_csv, index=False)


def save_weights(module: DetectorModule, path: Path, config: dict) -> None:
    """The model's tensors plus what is needed to rebuild it: loads with weights_only=True."""
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in module.model.state_dict().items()},
                "model": config["model"], "image_size": int(config["image_size"]),
                "model_kwargs": dict(config["model_kwargs"] or {}), "variant": config["variant"]}, path)


def load_model(run_dir: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """The best model of a run, in eval mode, and its saved settings (loaded with weights_only=True).

    A missing, empty, truncated, foreign or malicious model.pt gets a ValueError (FileNotFoundError
    when absent) that names the file and says what to do; torch's advice to load with
    weights_only=False, which would run whatever the file holds, is never passed on.
    """
    import pickle  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    run_dir = Path(run_dir)
    path = run_dir / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a finished training run?")
    again = "retrain the run or copy model.pt again"
    if path.is_dir() or path.stat().st_size == 0:
        raise ValueError(f"{path} is {'a folder' if path.is_dir() else 'empty (0 bytes)'}: {again}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a checkpoint torch.save wrote (not a zip archive: truncated, corrupt or "
                         f"another kind of file): {again}")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
        model = build_model(saved["model"], image_size=saved["image_size"], **saved["model_kwargs"])
        model.load_state_dict(saved["state_dict"])
    except pickle.UnpicklingError as err:
        found = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "nsupported" in line]
        detail = f" ({found[0][:160]})" if found else ""
        raise ValueError(f"{path} was refused: it holds Python objects besides tensors and plain settings{detail}, "
                         "and loading those could run code. Use a model.pt that helpers.training wrote") from None
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} holds no model that helpers.training.save_weights wrote ({type(err).__name__}: "
                         f"{err}; it writes state_dict, model, image_size, model_kwargs and variant): {again}") from None
    except (RuntimeError, EOFError, OSError) as err:
        text = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        if "state_dict" in str(err) or "size mismatch" in str(err):
            raise ValueError(f"{path}: its weights do not fit the model it names ({text}): {again}") from None
        raise ValueError(f"{path} cannot be loaded ({text}): {again}") from None
    return model.eval(), {k: v for k, v in saved.items() if k != "state_dict"}


@torch.no_grad()
def predict_logits(model: nn.Module, loader, device: torch.device) -> np.ndarray:
    """Logits for every item of `loader`, in order."""
    model.eval().to(device)
    out = []
    # fp32, not bf16 autocast: bf16 rounds nearby logits to ties, which moves AUC and the threshold.
    for images, _, _ in loader:
        out.append(model(images.to(device, non_blocking=True)).reshape(-1).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def eval_faces(split_csv: str | Path) -> pd.DataFrame | None:
    """eval.csv beside split.csv (notebook 03: many frames and every face per held-out video), or None.

    A held-out split for which eval.csv has no face at all (its videos' evaluation frames gave no
    face) takes split.csv's faces of that split instead, so calibration and scoring always have rows.
    """
    path = Path(split_csv).with_name("eval.csv")
    if not path.is_file():
        return None
    from helpers.splits import read_split  # noqa: PLC0415 - splits imports faces, which is heavy

    frame = read_split(path)
    parts = []
    for name in ("val", "test"):
        part = frame[frame.split == name]
        if part.empty:
            split = read_split(split_csv)
            part = split[split.split == name]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def write_predictions(model: nn.Module, data: FaceDataModule, run_dir: Path, device: torch.device,
                      evaluation: pd.DataFrame | None = None) -> pd.DataFrame:
    """Raw logits of the val and test faces (eval.csv's when given, else split.csv's)."""
    frames = []
    for split in ("val", "test"):
        if evaluation is not None:
            frame = evaluation[evaluation.split == split].reset_index(drop=True)
            loader = data.loader_for(frame, f"eval_{split}")
            paths = data.datasets[f"eval_{split}"].paths
        else:
            frame, loader = data.frames[split], (data.val_dataloader() if split == "val" else data.test_dataloader())
            paths = data.datasets[split].paths
        logits = predict_logits(model, loader, device)
        columns = {c: frame[c] for c in ("face_path", "video_id", "group", "label", "frame_index", "face_index")
                   if c in frame.columns}
        frames.append(pd.DataFrame({**columns, "logit": logits, "split": split,
                                    "variant_path": paths}))  # the crop the model saw (face_path for "full")
    return pd.concat(frames, ignore_index=True)


def face_settings_of(split_csv: str | Path) -> dict | None:
    """The crop settings notebook 02 wrote (via split_audit.json's faces_csv), for the predictor; None if unknown."""
    audit = Path(split_csv).with_name("split_audit.json")
    try:
        from helpers import faces  # noqa: PLC0415

        faces_csv = json.loads(audit.read_text(encoding="utf-8"))["faces_csv"]
        return faces.read_settings(faces_csv)
    except (OSError, KeyError, ValueError, AttributeError, json.JSONDecodeError):
        return None


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (GPU available..., tips) out of notebooks; warnings still show."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


class EpochProgressBar(pl.callbacks.ProgressBar):
    """One bar per run, read by a student: "epoch 3/8" counted from 1, this epoch's mean training loss and the
    last validation AUC beside it; no validation bar (validation is short) and no `v_num`."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True
        self.bar = None
        self.val_auc: float | None = None
        self._loss = [0.0, 0]  # sum and count of this epoch's training losses

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def _postfix(self) -> str:
        loss = f"loss {self._loss[0] / self._loss[1]:.3f}" if self._loss[1] else "loss -"
        return loss + (f", val AUC {self.val_auc:.3f}" if self.val_auc is not None else ", val AUC -")

    def on_train_start(self, trainer, pl_module) -> None:
        if not self.enabled:
            return
        from helpers.runtime import progress  # noqa: PLC0415

        per_epoch = self.total_train_batches
        finite = isinstance(per_epoch, int) or math.isfinite(per_epoch)
        total = int(per_epoch) * int(trainer.max_epochs) if finite and trainer.max_epochs else None
        self.bar = progress(total=total, initial=int(per_epoch) * trainer.current_epoch if total else 0,
                            unit="batch", dynamic_ncols=True, leave=True,
                            desc=f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._loss = [0.0, 0]
        if self.bar is not None:
            self.bar.set_description(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", refresh=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss[0] += float(loss)
            self._loss[1] += 1
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix(), refresh=False)
            self.bar.update(1)

    def on_validation_end(self, trainer, pl_module) -> None:
        auc = trainer.callback_metrics.get("val/auc")
        if auc is not None and not trainer.sanity_checking:
            self.val_auc = float(auc)
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix())

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()


def show_progress() -> bool:
    """A progress bar in a terminal or a Jupyter session, not in headless papermill runs."""
    if headless():
        return False
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def fit_and_test(config: dict) -> Path:
    """Train, pick the best epoch by val/auc, score val and test, and write the run folder."""
    config = make_config(**config)
    quiet_lightning()
    run_dir = run_dir_of(config)
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    # Under DDP every rank runs this function; only the first may clear and write the run folder.
    first_rank = is_first_rank()
    if first_rank and not config["resume"] and run_dir.exists():
        clear_run_dir(run_dir)  # a fresh run: stale checkpoints would otherwise be mixed in
    run_dir.mkdir(parents=True, exist_ok=True)
    if config["accelerator"] == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(config["threads"] or cpu_count())
    pl.seed_everything(config["seed"], workers=True, verbose=False)

    data = FaceDataModule(config["split_csv"], config["variant"], config["image_size"], config["batch_size"],
                          config["num_workers"], config["augment"], config["imbalance"], config["cache_dir"],
                          config["seed"])
    data.setup()
    pos_weight = data.pos_weight if config["imbalance"] == "pos_weight" else 1.0
    module = DetectorModule(config["model"], config["image_size"], config["model_kwargs"], config["pretrained"],
                            config["lr"], config["weight_decay"], config["optimizer"], config["warmup_epochs"],
                            pos_weight, config["schedule"])
    if first_rank:
        summary = {**config, "data": data.describe(), "pos_weight": pos_weight,
                   "parameters": sum(p.numel() for p in module.parameters()),
                   "face_settings": face_settings_of(config["split_csv"])}
        (run_dir / "config.json").write_text(json.dumps(summary, indent=2, default=str))

    # The best epoch needs only its weights (the optimizer state triples a VGG19 checkpoint).
    best = pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch:03d}", monitor="val/auc",
                                        mode="max", save_top_k=1, save_weights_only=True)
    # Since Lightning 2.6 save_last=True writes last.ckpt only when a best checkpoint is written, so a
    # resume would go back to the best epoch; this callback overwrites last.ckpt after every epoch.
    latest = pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, filename=last.stem, monitor=None, save_top_k=1,
                                          every_n_epochs=1, enable_version_counter=False)
    callbacks = [best, latest]  # in this order, so last.ckpt records this epoch's best as well
    if show_progress():
        callbacks.append(EpochProgressBar())
    if config["early_stopping"]:
        callbacks.append(pl.callbacks.EarlyStopping(monitor="val/auc", mode="max", patience=config["early_stopping"]))
    world = int(config["devices"]) * int(config["num_nodes"])
    strategy = config["strategy"] if config["strategy"] != "auto" or world == 1 else "ddp"
    trainer = pl.Trainer(
        max_epochs=config["epochs"], accelerator=config["accelerator"], devices=config["devices"],
        num_nodes=config["num_nodes"], strategy=strategy,
        precision=resolve_precision(config["precision"], config["accelerator"]),
        gradient_clip_val=config["grad_clip"] or None, callbacks=callbacks,
        logger=pl.loggers.CSVLogger(run_dir, name="", version="logs"),
        limit_train_batches=config["limit_train_batches"], enable_model_summary=False,
        enable_progress_bar=any(isinstance(c, EpochProgressBar) for c in callbacks), log_every_n_steps=1,
        num_sanity_val_steps=0, deterministic=("warn" if config["deterministic"] else False),
    )
    resuming = resume_from(config, last)
    metrics_csv = run_dir / "logs" / "metrics.csv"
    # CSVLogger rewrites metrics.csv from scratch on every fit, which would drop the epochs before a resume.
    earlier = pd.read_csv(metrics_csv) if resuming and metrics_csv.exists() and metrics_csv.stat().st_size else None
    started = time.time()
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resuming else None)
    seconds = time.time() - started
    if not trainer.is_global_zero:
        return run_dir
    if earlier is not None:
        restore_earlier_epochs(earlier, metrics_csv)

    best_path = best.best_model_path or str(last)
    state = torch.load(best_path, map_location="cpu", weights_only=False)  # our own Lightning checkpoint
    module.load_state_dict(state["state_dict"])
    save_weights(module, run_dir / "model.pt", config)
    history = history_from_log(metrics_csv)
    history.to_csv(run_dir / "history.csv", index=False)
    if not resuming:
        module.save_val_probs(run_dir / "val_probs.npy")

    model, _ = load_model(run_dir)  # what the results notebook and predict will use: prove it loads
    device = torch.device("cuda" if torch.cuda.is_available() and config["accelerator"] != "cpu" else "cpu")
    evaluation = eval_faces(config["split_csv"])
    raw = write_predictions(model, data, run_dir, device, evaluation)
    prevalence, prevalence_from = protocol.train_prevalence(config["split_csv"], data.frames["train"])
    predictions, payload = protocol.evaluate_predictions(raw, prevalence, prevalence_from,
                                                         n_boot=config["n_boot"], seed=config["seed"])
    predictions.to_csv(run_dir / "predictions.csv", index=False)
    payload["evaluated_on"] = ("eval.csv: every face of the held-out videos' evaluation frames" if evaluation is not None
                               else "split.csv's val and test faces")
    payload.update({
        "run": config["run_name"], "model": config["model"], "variant": config["variant"],
        "best_epoch": int(state.get("epoch", -1)), "best_val_auc": float(best.best_model_score)
        if best.best_model_score is not None else None, "epochs_trained": int(trainer.current_epoch),
        "train_seconds": round(seconds, 1), "parameters": sum(p.numel() for p in model.parameters()),
    })
    (run_dir / "metrics.json").write_text(json.dumps(M.to_jsonable(payload), indent=2))
    return run_dir


def is_first_rank() -> bool:
    """Rank 0 of a DDP job, before Lightning has set anything up: Lightning's own launcher sets LOCAL_RANK and
    NODE_RANK for the processes it starts, srun sets SLURM_PROCID for every task."""
    env = os.environ
    return env.get("LOCAL_RANK", "0") == "0" and env.get("NODE_RANK", "0") == "0" and env.get("SLURM_PROCID", "0") == "0"


def clear_run_dir(run_dir: Path) -> None:
    """Empty a run folder for a fresh run, keeping run.yaml (the settings a DDP subprocess was started with)."""
    for item in run_dir.iterdir():
        if item.name == "run.yaml":
            continue
        shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()


def run(config: dict) -> Path:
    """fit_and_test in this process for one device; as a subprocess (the CLI) for DDP."""
    config = make_config(**config)
    if int(config["devices"]) * int(config["num_nodes"]) <= 1:
        return fit_and_test(config)
    run_dir = run_dir_of(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "run.yaml"  # kept by clear_run_dir, so the subprocess still finds it
    config_path.write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "helpers.training", "--config", str(config_path)], check=True,
                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return run_dir


def parse_value(text: str):
    """A --set value: YAML scalars (3, 0.1, true, [a, b], {k: v})."""
    return yaml.safe_load(text)


def read_settings(config_path: Path | None, overrides: list[str]) -> dict:
    """The settings of a --config YAML file with the --set KEY=VALUE overrides applied."""
    settings = {}
    if config_path is not None:
        if not config_path.is_file():
            raise ValueError(f"{config_path} does not exist: pass a YAML file of settings with --config")
        settings = yaml.safe_load(config_path.read_text()) or {}
        if not isinstance(settings, dict):
            kind = type(settings).__name__
            raise ValueError(f"{config_path} must hold a mapping of settings (key: value), not a {kind}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            # "--set epochs" would otherwise set epochs to None, which Lightning reads as 1000 epochs
            raise ValueError(f"--set {item!r} is not KEY=VALUE (e.g. --set epochs=3)")
        settings[key] = parse_value(value)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.training", description="Train and test one detector.")
    parser.add_argument("--config", type=Path, help="YAML file of settings (see helpers.training.DEFAULTS)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override settings")
    parser.add_argument("--dump", action="store_true",
                        help="print the resolved settings as YAML (a run.yaml for --config) and exit")
    args = parser.parse_args(argv)
    try:
        config = make_config(**read_settings(args.config, args.set))
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"training: {err}", file=sys.stderr)
        return 2
    if args.dump:
        print(yaml.safe_dump(config, sort_keys=True), end="")
        return 0
    run_dir = fit_and_test(config)
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
