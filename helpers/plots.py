"""Figures the notebooks show and the report embeds; each returns its matplotlib Figure."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

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
               title: str | None = None):
    """A grid of images (arrays or paths), each with an optional small title."""
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
            ax.set_title(str(titles[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def counts_by(frame: pd.DataFrame, by: str, hue: str = "label", title: str | None = None):
    """A stacked bar chart of row counts by `by`, split by `hue` (REAL/FAKE colours kept fixed)."""
    table = frame.groupby([by, hue]).size().unstack(fill_value=0)
    colours = [LABEL_COLOURS.get(str(c), None) for c in table.columns]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(table) + 2), 3.2))
    table.plot.bar(stacked=True, ax=ax, color=colours if all(colours) else None, rot=30)
    ax.set_ylabel("count")
    ax.set_xlabel(by)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
