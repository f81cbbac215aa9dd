"""Tables a reader can read: the few columns that matter, paths relative to the project, what the table means.

A notebook ends a cell with `display.table(frame, "what it means", empty="what no rows means")` instead of
a raw `frame.head()`: the sentence is shown above the table (in Jupyter and in the rendered report), an
empty table shows the `empty` sentence instead, absolute paths become project-relative ones, and no
table is wider than MAX_COLUMNS. `display.settings(mapping, ...)` shows a dict (settings.json, an
audit's checks) as a two-column table instead of raw JSON.
"""
from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

MAX_COLUMNS = 12  # index included: what fits an A4 page and a Jupyter pane at the report's font size
MAX_ROWS = 20
# Folders of the project layout: a path outside the project (a test's temporary copy) is shown from the first.
LAYOUT_FOLDERS = ("data", "figures", "report", "build", "notebooks")
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~…-])(/[^\s/<>\"'|]+){2,}")
MISSING_TEXT = "-"
TOTAL_ROWS = ("total", "all")  # a last row named so sums the table
INTERVAL = re.compile(r"^-?\d+(\.\d+)? \[-?\d+(\.\d+)?, -?\d+(\.\d+)?\]$")


def project_root() -> Path:
    from helpers.notebook import project_root as root  # noqa: PLC0415

    return root()


def relative_path(value, root: Path | None = None) -> str:
    """A path as a reader can follow it: relative to the project root, else from its first layout folder.

    Paths outside the project and outside its layout keep their last two parts after "…/".
    """
    text = str(value)
    path = Path(text)
    if not path.is_absolute():
        return text
    root = Path(root or project_root()).resolve()
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        pass
    parts = path.parts
    for i, part in enumerate(parts[1:], start=1):
        if part in LAYOUT_FOLDERS:
            return str(Path(*parts[i:]))
    return "…/" + "/".join(parts[-2:])


def is_absolute_path(value) -> bool:
    """Whether a cell holds an absolute file path (what a table must never show)."""
    return isinstance(value, (str, Path)) and bool(ABSOLUTE_PATH.search(str(value)))


def relative_paths(frame: pd.DataFrame, root: Path | None = None) -> pd.DataFrame:
    """A copy of `frame` whose absolute paths (in cells and in the index) are project-relative."""
    def fix(value):
        if isinstance(value, Path) or (isinstance(value, str) and value.startswith("/")):
            return relative_path(value, root)
        if isinstance(value, str) and ABSOLUTE_PATH.search(value):
            return ABSOLUTE_PATH.sub(lambda m: relative_path(m.group(0), root), value)
        return value

    textual = (pd.api.types.is_object_dtype, pd.api.types.is_string_dtype)
    out = frame.copy()
    for column in out.columns:
        if any(check(out[column].dtype) for check in textual):
            out[column] = out[column].map(fix)
    if any(check(out.index.dtype) for check in textual):
        out.index = out.index.map(fix)
    return out


def _inline(text: str) -> str:
    """The little Markdown the sentences use (`code`, **bold**, *italic*) as HTML."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", escaped)


def _cell(value):
    """A cell as shown: missing values as "-", floats with at most 3 decimals."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return MISSING_TEXT
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1e5 else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) if value else "(none)"
    if isinstance(value, str) and INTERVAL.match(value):
        return value.replace(" ", "\u00a0")  # "0.812 [0.781, 0.840]" never breaks over two lines
    return value


class Table:
    """A table with the sentence that says what it means; Jupyter and nbconvert show it as HTML."""

    def __init__(self, frame: pd.DataFrame, note: str = "", empty: str = "", index: bool = True,
                 total_rows: int | None = None):
        self.frame, self.note, self.empty, self.index = frame, note, empty, index
        self.total_rows = len(frame) if total_rows is None else total_rows

    @property
    def is_empty(self) -> bool:
        return self.total_rows == 0

    @property
    def narrow(self) -> bool:
        """Few short columns: the report sets such tables side by side (class "narrow")."""
        columns = len(self.frame.columns) + (self.frame.index.nlevels if self.index else 0)
        longest = max((len(str(v)) for v in self.frame.to_numpy().ravel()), default=0)
        return not self.is_empty and columns <= 4 and longest <= 24 and len(self.note) <= 160

    def _more(self) -> str:
        return (f"First {len(self.frame)} of {self.total_rows} rows." if self.total_rows > len(self.frame) else "")

    def _repr_html_(self) -> str:
        parts = [f"<p>{_inline(self.note)}</p>"] if self.note else []
        if self.is_empty:
            parts.append(f"<p><em>{_inline(self.empty or 'No rows.')}</em></p>")
        else:
            parts.append(self.frame.to_html(index=self.index, na_rep=MISSING_TEXT, escape=True, border=0,
                                            classes="dataframe readable"))
            if self._more():
                parts.append(f"<p><em>{self._more()}</em></p>")
        kind = "readable-table narrow" if self.narrow else "readable-table"
        return f"<div class='{kind}'>" + "\n".join(parts) + "</div>"

    def __repr__(self) -> str:
        lines = [self.note] if self.note else []
        if self.is_empty:
            lines.append(self.empty or "No rows.")
        else:
            lines.append(self.frame.to_string(index=self.index, na_rep=MISSING_TEXT))
            if self._more():
                lines.append(self._more())
        return "\n".join(lines)


def table(frame: pd.DataFrame | pd.Series, note: str = "", empty: str = "", columns: Sequence[str] | None = None,
          rows: int = MAX_ROWS, index: bool | None = None, rename: Mapping[str, str] | None = None,
          root: Path | None = None) -> Table:
    """`frame` shaped for reading: `columns` only (those present), at most `rows` rows, relative paths, the
    `note` above it and the `empty` sentence instead of an empty table.

    A frame wider than MAX_COLUMNS keeps its first MAX_COLUMNS columns (the note should say where the rest is).
    index: show the index (default: when it is not a plain 0..n-1 range).
    """
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    if index is None:
        index = not isinstance(frame.index, pd.RangeIndex)
    limit = MAX_COLUMNS - (frame.index.nlevels if index else 0)
    frame = frame.iloc[:, :limit]
    total = len(frame)
    last = frame.index[-1] if total else None
    last = last[0] if isinstance(last, tuple) else last
    if total > rows and str(last).lower() in TOTAL_ROWS:  # the sum row stays when the table is cut
        shown = relative_paths(pd.concat([frame.head(rows - 1), frame.tail(1)]), root)
    else:
        shown = relative_paths(frame.head(rows), root)
    shown = shown.map(_cell) if len(shown) else shown
    if rename:
        shown = shown.rename(columns=dict(rename))
    return Table(shown, note, empty, index, total)


def _flatten(mapping: Mapping, prefix: str = "") -> Iterable[tuple[str, object]]:
    """(key, value) pairs; a nested mapping becomes "key · inner" rows."""
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name} · ")
        else:
            yield name, value


def settings(mapping: Mapping, note: str = "", names: Mapping[str, str] | None = None,
             upper: bool = False, empty: str = "", keys: Sequence[str] | None = None,
             root: Path | None = None) -> Table:
    """A mapping (settings.json, an audit's checks, a metrics dict) as a two-column table, nested keys as "a · b".

    names: a sentence or a readable name per key, shown in a third column `meaning`; upper: keys as the
    notebook's PARAMETER names (FACE_SIZE for face_size); keys: only these, in this order.
    """
    mapping = dict(mapping or {})
    if keys is not None:
        mapping = {k: mapping[k] for k in keys if k in mapping}
    rows = []
    for key, value in _flatten(mapping):
        shown = key.upper() if upper else key
        row = {"setting": shown, "value": value}
        if names:
            row["meaning"] = names.get(key, names.get(key.split(" · ")[0], ""))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["setting", "value", *(["meaning"] if names else [])])
    if len(frame):
        frame["value"] = frame["value"].map(lambda v: relative_path(v, root) if is_absolute_path(v) else v)
    # no index name: it would add a second header row above the settings
    return table(frame.set_index("setting").rename_axis(None), note, empty or "Nothing recorded.", index=True, rows=200,
                 root=root)


def widest_table(html_text: str) -> int:
    """The most cells any row of any <table> in `html_text` has (colspans counted)."""
    widest = 0
    for body in re.findall(r"<table.*?</table>", html_text, flags=re.S | re.I):
        for row in re.findall(r"<tr.*?</tr>", body, flags=re.S | re.I):
            cells = re.findall(r"<t[hd]([^>]*)>", row, flags=re.I)
            width = sum(int(m.group(1)) if (m := re.search(r'colspan="?(\d+)', attrs)) else 1 for attrs in cells)
            widest = max(widest, width)
    return widest


def table_cells(html_text: str) -> list[str]:
    """The text of every cell of every <table> in `html_text` (tags removed, entities decoded)."""
    cells = []
    for body in re.findall(r"<table.*?</table>", html_text, flags=re.S | re.I):
        for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", body, flags=re.S | re.I):
            cells.append(html.unescape(re.sub(r"<[^>]+>", "", cell)).strip())
    return cells


def with_intervals(frame: pd.DataFrame, columns: Sequence[str], digits: int = 3) -> pd.DataFrame:
    """`col`, `col_lo`, `col_hi` merged into one "value [lo, hi]" column named `col` (the lo/hi columns dropped)."""
    out = frame.copy()
    for column in columns:
        lo, hi = f"{column}_lo", f"{column}_hi"
        if column not in out or lo not in out or hi not in out:
            continue
        out[column] = [MISSING_TEXT if pd.isna(v) else f"{v:.{digits}f} [{a:.{digits}f}, {b:.{digits}f}]"
                       for v, a, b in zip(out[column], out[lo], out[hi])]
        out = out.drop(columns=[lo, hi])
    return out


def choices(metrics: dict) -> Table:
    """What a run fitted on validation (threshold, Platt calibration), how calibration changed the test scores,
    and which faces it was scored on: one row each, instead of the raw metrics.json entries."""
    threshold = metrics.get("threshold") or {}
    calibration = metrics.get("calibration") or {}

    def num(key, source=calibration):
        value = source.get(key)
        return MISSING_TEXT if value is None else f"{value:.3f}"

    rows = [
        ("decision threshold", num("value", threshold),
         f"chosen on {threshold.get('chosen_on', '?')}: {threshold.get('rule', '?')}; a face is called FAKE above it"),
        ("Platt calibration", f"slope {num('slope')}, intercept {num('intercept')}",
         f"fitted on {calibration.get('fitted_on', '?')} logits: P(FAKE) = sigmoid(slope · logit + intercept)"),
        ("test log loss", f"{num('log_loss_before')} raw, {num('log_loss_platt')} after Platt",
         f"temperature scaling alone (T = {num('temperature')}) gives {num('log_loss_temperature')}"),
        ("test ECE", f"{num('ece_before')} raw, {num('ece_platt')} after Platt",
         "expected calibration error: the mean gap between predicted and observed FAKE share"),
        ("scored on", metrics.get("evaluated_on", MISSING_TEXT), ""),
    ]
    frame = pd.DataFrame(rows, columns=["choice", "value", "meaning"]).set_index("choice").rename_axis(None)
    return Table(frame, "What this run fitted on validation, and what it was scored on:")


# What the split audit's entries mean (helpers.splits writes them), for display.settings(..., names=AUDIT_MEANINGS).
AUDIT_MEANINGS = {
    "links · identity_columns": "columns whose shared values join videos as one person",
    "links · name_pattern": "video ids that name people (FaceForensics++ style)",
    "links · original": "links from a fake to its original",
    "links · identity": "links from the identity columns",
    "links · name": "links from names matching the pattern",
    "links · part": "links from holding out whole dataset parts",
    "links · absent_originals": "originals named by a fake but not in the folder",
    "links · videos_with_identity": "videos with a value in an identity column",
    "links · videos": "videos in faces.csv",
    "groups · count": "identity groups (each goes whole to one split)",
    "groups · largest_faces": "faces in the largest group",
    "groups · largest_share": "the largest group's share of all faces",
    "groups · median_faces": "faces in the median group",
    "method": "how videos were compared",
    "threshold": "descriptor distance within which two videos count as one person",
    "videos": "videos with at least one embedded face",
    "clusters": "identity clusters the embeddings found",
    "largest": "videos in the largest cluster",
    "largest_share": "the largest cluster's share of the videos",
    "singletons": "videos alone in their cluster",
    "faces_embedded": "face crops embedded",
    "faces_per_video_at_most": "faces embedded per video, at most",
    "unreadable · count": "crops the embedder could not read",
    "unreadable · examples": "a few of them",
    "groups_without_embeddings": "identity groups from the other links alone",
    "groups_with_embeddings": "identity groups once the clusters are joined in",
    "groups_merged_by_embeddings": "groups the clusters merged",
    "groups_spanning_splits": "groups with faces in two splits (must be 0)",
    "links_crossing_splits": "known links between videos in two splits (must be 0)",
    "overall_fake_share": "FAKE share of all faces",
    "tolerance": "how far a split's share of faces may be from its request (twice the largest group's share)",
    "warnings": "too few groups to fill every split, or a split given a group to be non-empty",
    "mode": "BALANCE",
    "unit": "what balancing counts in (faces), - when nothing is balanced",
    "dropped_faces": "training faces dropped by undersampling",
    "weights": "per-class loss weights, - when not weighting",
    "note": "",
}

# The leaderboard columns that fit a page (the run's name says its variant, `model` what trained: head, input
# size, epochs, ImageNet or scratch; helpers.results.leaderboard's CSV keeps every column: variant, threshold,
# EER, TPR at 1% FPR).
LEADERBOARD_COLUMNS = ["model", "val AUC", "accuracy", "balanced acc.", "AUC", "log loss", "n", "chosen"]


def counts(mapping: Mapping | None, unit: str = "in") -> str:
    """{"val": 12, "test": 0} as "12 in val, 0 in test" for a sentence (- when there is nothing)."""
    if not mapping:
        return MISSING_TEXT
    return ", ".join(f"{_cell(value)} {unit} {key}" for key, value in mapping.items())


def where(frame: pd.DataFrame, **values) -> pd.DataFrame:
    """The rows whose index level or column `name` equals `value`, for each name=value; a name the frame lacks
    (a one-row note in place of a table, say) filters nothing."""
    keep = pd.Series(True, index=frame.index)
    for name, value in values.items():
        if name in (frame.index.names or []):
            keep &= frame.index.get_level_values(name) == value
        elif name in frame.columns:
            keep &= frame[name].to_numpy() == value
    return frame[keep.to_numpy()]
