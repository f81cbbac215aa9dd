"""Figures the notebooks show and the report embeds; each returns its matplotlib Figure."""
from __future__ import annotations

import re

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

LABEL_COLOURS = {"REAL": "#4C72B0", "FAKE": "#DD8452"}


def save_figure(fig, name: str, figures_dir: str | Path = "figures") -> Path:
    """Write `fig` as figures_dir/name.png (a stable name the report refers to)."""
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path)
    return path


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (grey and RGBA converted)."""
    import cv2  # noqa: PLC0415

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: cannot be read as an image (missing, empty or corrupt)")
    from helpers.faces import to_rgb  # noqa: PLC0415

    return to_rgb(image, channel_order="BGR")


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 6, size: float = 2.2,
               title: str | None = None, fontsize: float = 9):
    """A grid of images (arrays or paths), each with an optional title (`fontsize` points at full width)."""
    n = len(images)
    if n == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center")
        ax.axis("off")
        return fig
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(load_rgb(image) if isinstance(image, (str, Path)) else image)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=fontsize)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def natural_key(value) -> tuple:
    """A sort key that orders the numbers inside names by value: part_2 before part_10."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(value)))


def counts_by(frame: pd.DataFrame, by: str, hue: str = "label", title: str | None = None):
    """A stacked bar chart of row counts by `by`, split by `hue` (REAL/FAKE colours kept fixed)."""
    table = frame.groupby([by, hue]).size().unstack(fill_value=0)
    table = table.loc[sorted(table.index, key=natural_key)]  # part_2 before part_10
    colours = [LABEL_COLOURS.get(str(c), None) for c in table.columns]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(table) + 2), 3.2))
    table.plot.bar(stacked=True, ax=ax, color=colours if all(colours) else None, rot=30)
    # Rotated labels anchored at their right end, so each ends under its own bar.
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    ax.set_ylabel("count")
    ax.set_xlabel(by)
    # Beside the axes, not inside: inside, the legend hides the tallest bar.
    ax.legend(title=hue, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def frame_pairs(frames: pd.DataFrame, n: int = 3, fakes: int = 3, size: float = 2.4):
    """Rows of one REAL frame beside frames of its fakes at the same frame index (paired by `original`, not position).

    `frames`: frames.csv rows (status ok). Each row of the figure: the original, then up to `fakes` of its fakes.
    """
    ok = frames[frames.status == "ok"] if "status" in frames else frames
    real = ok[ok.label == "REAL"].sort_values(["video_id", "frame_index"])
    fake = ok[ok.label == "FAKE"]
    rows, used = [], set()
    for _, original in real.iterrows():
        if original.video_id in used:
            continue  # one frame per original: the rows show different people
        same = fake[(fake.original == original.video_id) & (fake.frame_index == original.frame_index)]
        if len(same):
            used.add(original.video_id)
            rows.append((original, same.sort_values("video_id").head(fakes)))
        if len(rows) == n:
            break
    images, titles = [], []
    columns = 1 + max((len(f) for _, f in rows), default=0)
    for original, made in rows:
        images.append(original.frame_path)
        titles.append(f"REAL {original.video_id}\nframe {original.frame_index}")
        for _, row in made.iterrows():
            images.append(row.frame_path)
            titles.append(f"FAKE {row.video_id}\nof {original.video_id}")
        images += [np.zeros((2, 2, 3), np.uint8)] * (columns - 1 - len(made))  # a short row stays aligned
        titles += [""] * (columns - 1 - len(made))
    fig = image_grid(images, titles, ncols=columns, size=size, fontsize=9)
    for ax, image in zip(fig.axes, images):
        if isinstance(image, np.ndarray) and image.shape[:2] == (2, 2):
            ax.set_visible(False)
    return fig


def confidence_histogram(faces: pd.DataFrame, threshold: float | None = None):
    """MTCNN confidence of the kept faces detected on their own frame, REAL and FAKE side by side.

    Fakes that reuse their original's boxes (`box_source == "original"`) carry its confidence, so drawing
    them would only repeat the REAL bars; the title says how many were left out.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3))
    kept = faces[faces.status == "ok"]
    reused = kept["box_source"].eq("original") if "box_source" in kept else pd.Series(False, index=kept.index)
    own = kept[~reused]
    low = max(0.0, float(own.confidence.min()) - 0.01) if len(own) else 0.0
    bins = np.linspace(low, 1.0, 21)
    groups = [(label, group.confidence.to_numpy()) for label, group in own.groupby("label")]
    if groups:
        ax.hist([values for _, values in groups], bins=bins, label=[f"{label} ({len(v)})" for label, v in groups],
                color=[LABEL_COLOURS.get(label, "grey") for label, _ in groups])  # side by side, never overlaid
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"MIN_CONFIDENCE {threshold}")
    ax.set_xlabel("MTCNN confidence")
    ax.set_ylabel("faces")
    note = f"; {int(reused.sum())} fakes reuse their original's box and confidence (not drawn)" if reused.any() else ""
    ax.set_title(f"Faces detected on their own frame{note}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def faces_with_landmarks(faces: pd.DataFrame, settings, n: int = 12, ncols: int = 6):
    """Face crops with their five landmarks and the eyes / lower-face bands drawn on.

    `settings`: where the crop size comes from: the faces stage's OUT_DIR (or its faces.csv or
    settings.json), a dict from faces.read_settings, or the crop side in pixels.
    """
    from helpers.faces import crop_landmarks, read_settings, region_boxes  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    if isinstance(settings, (str, Path)):
        settings = read_settings(settings)
    face_size = int(settings["face_size"]) if isinstance(settings, dict) else int(settings)
    rows = faces[faces.status == "ok"].head(n)
    fig = image_grid(list(rows.face_path), [f"{v} {l} {c:.3f}" for v, l, c in zip(rows.video_id, rows.label, rows.confidence)],
                     ncols=ncols)
    for ax, (_, row) in zip(fig.axes, rows.iterrows()):
        points = crop_landmarks(row, face_size)
        ax.scatter(points[:, 0], points[:, 1], s=10, c=["c", "c", "y", "m", "m"])
        for (x0, y0, x1, y1), colour in zip(region_boxes(points, face_size).values(), ("c", "m")):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1))
    return fig


def region_variants(faces: pd.DataFrame, regions: Sequence[str], n: int = 6):
    """For `n` faces: the full crop and each region variant, one row per face."""
    rows = faces[faces.status == "ok"].head(n)
    columns = ["face_path", *[f"{r}_path" for r in regions]]
    images, titles = [], []
    for _, row in rows.iterrows():
        for column in columns:
            images.append(row[column])
            titles.append(column.replace("_path", "").replace("face", "full"))
    return image_grid(images, titles, ncols=len(columns))


def training_curves(history: pd.DataFrame, n_val: int | None = None, title: str | None = None):
    """Loss, accuracy and AUC per epoch, train vs val; val accuracy with its binomial 95% band."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    epochs = epoch_numbers(history)
    for ax, metric in zip(axes, ("loss", "acc", "auc")):
        for split, style in (("train", "-o"), ("val", "-s")):
            column = f"{split}/{metric}"
            if column in history:
                ax.plot(epochs, history[column], style, markersize=3, label=split)
        if metric == "acc" and n_val and "val/acc" in history:
            acc = history["val/acc"].to_numpy(dtype=float)
            half = 1.96 * np.sqrt(np.clip(acc * (1 - acc), 1e-4, None) / n_val)
            ax.fill_between(epochs, acc - half, acc + half, alpha=0.2, label=f"val 95% band (n={n_val})")
        integer_epochs(ax)
        ax.set_title(metric)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def epoch_numbers(history: pd.DataFrame) -> np.ndarray:
    """Epochs counted from 1, as the progress bar counts them (history.csv keeps Lightning's 0-based `epoch`)."""
    return history["epoch"].to_numpy() + 1 if "epoch" in history else np.arange(1, len(history) + 1)


def integer_epochs(ax) -> None:
    """An x axis of whole epochs (no 0.5 epoch ticks)."""
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str = "ROC (test faces)"):
    """ROC curves: name -> (fpr, tpr, auc)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="chance")
    ax.set_xlabel("false-positive rate (REAL called FAKE)")
    ax.set_ylabel("true-positive rate (FAKE caught)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def confusion_matrix(table: pd.DataFrame, title: str = "Confusion matrix (test faces)"):
    """A 2x2 confusion table as a heatmap with counts and row shares."""
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    values = table.to_numpy()
    shares = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    labels = np.array([[f"{count}\n{share:.0%}" for count, share in zip(*row)] for row in zip(values, shares)])
    sns.heatmap(shares, annot=labels, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False, square=True, ax=ax)
    # The colour is the row share, so the text turns white on the darker half whatever seaborn's luminance rule says.
    for text, share in zip(ax.texts, shares.flat):
        text.set_color("white" if share > 0.5 else "black")
    ticks = np.arange(len(table.columns)) + 0.5  # seaborn's cells span [i, i + 1]
    ax.set_xticks(ticks, table.columns)
    ax.set_yticks(np.arange(len(table.index)) + 0.5, table.index, rotation=0)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


SPLIT_ORDER = ("train", "val", "test")


def split_sizes(split: pd.DataFrame, title: str | None = "Faces per split and label"):
    """Stacked REAL/FAKE face counts per split (train, val, test), each bar labelled with its FAKE share."""
    table = split.groupby(["split", "label"]).size().unstack(fill_value=0)
    table = table.reindex(index=[s for s in SPLIT_ORDER if s in table.index],
                          columns=[c for c in LABEL_COLOURS if c in table.columns])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    table.plot.bar(stacked=True, ax=ax, color=[LABEL_COLOURS[c] for c in table.columns], rot=0)
    for i, (_, row) in enumerate(table.iterrows()):
        total = row.sum()
        share = row.get("FAKE", 0) / total if total else 0
        ax.text(i, total, f"{total} faces\n{share:.0%} FAKE", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, table.sum(axis=1).max() * 1.25 if len(table) else 1)
    ax.set_ylabel("faces")
    ax.set_xlabel("")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def nearest_train_distances(split: pd.DataFrame, threshold: int, bits: int = 64):
    """Histogram of each val/test face's Hamming distance to its nearest train face, with the threshold."""
    fig, ax = plt.subplots(figsize=(6, 3))
    bins = np.arange(0, bits + 2) - 0.5
    for name, colour in (("val", "#55A868"), ("test", "#C44E52")):
        values = split.loc[split.split == name, "nearest_train_distance"].dropna().astype(int)
        if len(values):
            ax.hist(values, bins=bins, alpha=0.6, label=f"{name} ({len(values)} faces)", color=colour)
    ax.axvline(threshold + 0.5, color="k", linestyle="--", linewidth=1, label=f"DUPLICATE_THRESHOLD {threshold}")
    ax.set_xlabel("bits to the nearest train face (perceptual hash)")
    ax.set_ylabel("faces")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def duplicate_pairs(examples: Sequence[dict], n: int = 6):
    """Near-duplicate pairs from the split audit: each val/test face beside its nearest train face."""
    images, titles = [], []
    for example in list(examples)[:n]:
        images += [example["face_path"], example["train_face_path"]]
        titles += [f"{example['split']} {example['video_id']}",
                   f"train {example['train_video_id']} ({example['distance']} bits)"]
    return image_grid(images, titles, ncols=4, title="Near-duplicates across splits" if images else None)


def curves_overview(histories: dict[str, pd.DataFrame]):
    """Accuracy and AUC per epoch for many runs: train dashed, val solid, one colour per run."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for i, (name, history) in enumerate(histories.items()):
        colour = f"C{i % 10}"
        for ax, metric in zip(axes, ("acc", "auc")):
            if f"val/{metric}" in history:
                ax.plot(epoch_numbers(history), history[f"val/{metric}"], "-", color=colour, label=f"{name} val")
            if f"train/{metric}" in history:
                ax.plot(epoch_numbers(history), history[f"train/{metric}"], "--", color=colour, alpha=0.6)
    for ax, metric in zip(axes, ("accuracy", "AUC")):
        ax.set_title(f"{metric} per epoch (val solid, train dashed)")
        integer_epochs(ax)
    axes[1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig


def reliability_diagrams(curves: dict[str, dict[str, pd.DataFrame]]):
    """Reliability diagrams, one panel per run: frac. FAKE vs mean predicted prob, before/after temperature."""
    n = max(1, len(curves))
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, pair) in zip(axes.flat, curves.items()):
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        for label, table in pair.items():
            ax.plot(table.mean_prob, table.frac_fake, "o-", markersize=3, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("predicted P(FAKE)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    for row in axes:
        row[0].set_ylabel("observed share FAKE")
    fig.tight_layout()
    return fig


def heatmap_overlays(images: np.ndarray, heatmaps: np.ndarray, landmarks: np.ndarray | None = None,
                     title: str | None = None, ncols: int = 8):
    """Faces with their explanation heatmap on top (and the eyes / lower-face bands when landmarks are given)."""
    from helpers.faces import region_boxes  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    fig = image_grid(list(images), ncols=ncols, size=1.8, title=title)
    for i, ax in enumerate(fig.axes[: len(images)]):
        ax.imshow(heatmaps[i], cmap="jet", alpha=0.45, extent=(-0.5, images.shape[2] - 0.5, images.shape[1] - 0.5, -0.5))
        if landmarks is not None:
            for (x0, y0, x1, y1), colour in zip(region_boxes(landmarks[i], images.shape[1]).values(), ("c", "m")):
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1))
    return fig


def crop_study_bars(table: pd.DataFrame, variants: Sequence[str] | None = None,
                    metrics: Sequence[str] = ("accuracy", "auc"), title: str | None = "Crop study: test faces"):
    """Grouped bars per model, one per face variant, for accuracy and AUC, with 95% interval error bars.

    Reads a crop_study.crop_study_table's numeric columns (`<metric>_<variant>`, `_lo`, `_hi`); with
    several seeds the bar is the mean over seeds and the error bar the seeds' mean bootstrap interval.
    """
    variants = list(variants or table.attrs.get("variants") or
                    sorted({c.split("_", 1)[1] for c in table.columns if c.startswith("accuracy_")
                            and not c.endswith(("_lo", "_hi", "_sd"))}))
    labels = list(table["Model"]) if "Model" in table else list(table["model"])
    names = {"full": "full face", "eyes": "eyes", "lower": "lower face", "eyes_lower": "eyes + lower face"}
    shown = [names.get(v, v) for v in variants]
    # One colour per variant in every panel, the matplotlib cycle's as before; saturation=1 keeps them undimmed.
    palette = {name: f"C{i % 10}" for i, name in enumerate(shown)}
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(5.0, 1.4 * len(table) + 2) * len(metrics) / 1.6, 3.6),
                             squeeze=False)
    drawn: list[str] = []
    for ax, metric in zip(axes[0], metrics):
        bars = interval_rows(table, metric, variants, shown)
        if len(bars):
            # The intervals are group-bootstrap ends computed beforehand, which seaborn's `errorbar` cannot take
            # (it recomputes from raw rows): bars from seaborn, the intervals drawn on the same centres.
            # x is the row's position, not its label, so two rows with one name stay two bars; dodge=True because
            # seaborn's "auto" stops dodging when one variant is left, and the bars would leave their intervals.
            sns.barplot(bars, x="row", y="value", hue="variant", order=range(len(table)), hue_order=shown,
                        palette=palette, saturation=1, alpha=0.9, errorbar=None, legend=False, dodge=True, ax=ax)
            ax.errorbar(bars["centre"], bars["value"], yerr=bars[["below", "above"]].to_numpy().T, fmt="none",
                        ecolor="k", capsize=3)
            drawn += [n for n in shown if n in set(bars["variant"]) and n not in drawn]
        ax.axhline(0.5, color="k", linestyle="--", linewidth=0.8)  # chance for AUC; a coin flip for balanced data
        ax.set_xticks(np.arange(len(table)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("")
        ax.set_ylabel({"auc": "AUC", "accuracy": "accuracy"}.get(metric, metric))
        ax.set_title({"auc": "AUC", "accuracy": "Accuracy"}.get(metric, metric))
    from matplotlib.patches import Patch  # noqa: PLC0415

    handles = [Patch(facecolor=palette[n], alpha=0.9, label=n) for n in shown if n in drawn]
    # One legend for both panels, above them: inside a panel it would hide the bars.
    fig.legend(handles=handles, loc="upper right", ncol=max(1, len(handles)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def interval_rows(table: pd.DataFrame, metric: str, variants: Sequence[str], shown: Sequence[str]) -> pd.DataFrame:
    """One row per bar of `metric`: table row, variant, value, interval below/above it, centre as seaborn dodges it."""
    width = 0.8 / max(1, len(variants))
    parts = []
    for i, (variant, name) in enumerate(zip(variants, shown)):
        column = f"{metric}_{variant}"
        if column not in table:
            continue  # its slot stays empty, so the other variants keep their places
        value = table[column].to_numpy(dtype=float)
        lo = table[f"{column}_lo"].to_numpy(dtype=float) if f"{column}_lo" in table else value
        hi = table[f"{column}_hi"].to_numpy(dtype=float) if f"{column}_hi" in table else value
        rows = np.arange(len(table))
        parts.append(pd.DataFrame({"row": rows, "variant": name, "value": value,
                                   "below": np.nan_to_num(value - lo, nan=0.0).clip(min=0),
                                   "above": np.nan_to_num(hi - value, nan=0.0).clip(min=0),
                                   "centre": rows + (i - (len(variants) - 1) / 2) * width}))
    bars = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["row", "variant", "value"])
    return bars[np.isfinite(bars["value"].to_numpy(dtype=float))].reset_index(drop=True)
