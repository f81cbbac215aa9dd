"""Identity-disjoint train/val/test splits of the faces manifest, with a leakage audit.

Why: a fake and its original show the same person, and DFDC's actors recur across many source videos.
A split by image puts one person in both training and test, and every number in the report goes up.

How faces are grouped (connected components of a graph over videos; every link we know joins two groups):
- a FAKE and its `original`, also when the original video is absent (two fakes of one absent original
  still share a group);
- names matching NAME_PATTERN: FaceForensics++ calls its originals `000` and a fake of 000 with the
  face of 003 `000_003`, so `000_003` joins the people 000 and 003 (DFDC's 10-letter ids never match);
- user identities: any column of IDENTITY_COLUMNS in faces.csv or in an identity CSV (e.g. actor ids;
  the demo's `identities.csv` gives each video's `identity` and, for a fake, its `source_identity`),
  and those a dataset layout gives frames.csv (FaceForensics++'s "youtube:000", Celeb-DF's "id0"; see
  helpers.layouts), which faces.csv does not carry: make_split takes them from its frames_csv.
  Values of all identity columns share one namespace: identity 3 as a source is identity 3 as a target.

Whole groups then go to train/val/test (`assign_groups`). Metadata cannot see one actor in two
unrelated source videos, so `find_near_duplicates` compares perceptual hashes of the face crops across
splits. `make_split` runs the whole stage and writes `split.csv` and `split_audit.json`.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from helpers.faces import COLUMNS as FACE_COLUMNS
from helpers.faces import read_faces_manifest
from helpers.frames import video_id_of
from helpers.manifest import read_manifest
from helpers import runtime

SPLITS = ("train", "val", "test")
# With fewer groups than non-empty splits requested, groups go to these splits in this order.
FILL_ORDER = ("test", "train", "val")
BALANCE_MODES = ("none", "undersample", "weights")
IDENTITY_COLUMNS = ("identity", "source_identity")
NAME_PATTERN = r"^(\d+)(?:_(\d+))?$"
SPLIT_COLUMNS = ("group", "split", "weight", "nearest_train_distance")
HASH_BITS = 64
GROUP_BY = ("identity", "part")
# Identity columns the stage adds itself: face clusters from embeddings, and the part with GROUP_BY "part".
FACE_CLUSTER_COLUMN, PART_COLUMN = "face_cluster", "part_group"


class LeakageError(RuntimeError):
    """A group or an identity link spans two splits: the split must not be used."""


# --- Identity links ---------------------------------------------------------------------------------

def _token(value) -> str | None:
    """An identity value as a string key ('' and NaN -> None; 3.0 read from a CSV -> '3')."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def identity_links(faces: pd.DataFrame, identity_columns: Sequence[str] = IDENTITY_COLUMNS,
                   name_pattern: str = NAME_PATTERN) -> pd.DataFrame:
    """Every link we know, one row per (video, node, kind); a node is "video:<id>", "identity:<v>" or "name:<t>".

    kind is "original" (a fake and its original video, present or not), "identity" (a value of an
    identity column) or "name" (a token of a video id matching `name_pattern`; "" turns names off).
    """
    pattern = re.compile(name_pattern) if name_pattern else None
    columns = [c for c in identity_columns if c in faces.columns]
    links = []
    keep = [c for c in ("video_id", "original", *columns) if c in faces]
    for row in faces[keep].drop_duplicates().to_dict("records"):
        video = _token(row["video_id"])
        if video is None:
            continue
        links.append((video, f"video:{video}", "self"))
        original = _token(row.get("original"))
        if original is not None and original != video:
            links.append((video, f"video:{original}", "original"))
        for column in columns:
            value = _token(row[column])
            if value is not None:
                links.append((video, f"identity:{value}", "identity"))
        match = pattern.fullmatch(video) if pattern else None
        if match:
            for token in match.groups():
                if token:
                    links.append((video, f"name:{token}", "name"))
    return pd.DataFrame(links, columns=["video_id", "node", "kind"]).drop_duplicates(ignore_index=True)


def group_videos(faces: pd.DataFrame, identity_columns: Sequence[str] = IDENTITY_COLUMNS,
                 name_pattern: str = NAME_PATTERN) -> pd.Series:
    """The identity group of every video (index video_id): "g-" + the smallest video id in the group."""
    links = identity_links(faces, identity_columns, name_pattern)
    videos = np.sort(links.video_id.unique())
    # Node i < len(videos) is "video:" + videos[i] (unique, so factorize numbers them in order); then come
    # the other nodes the links name. Every link joins its video's node to another node.
    nodes = pd.concat([pd.Series("video:" + videos.astype(object)), links.node], ignore_index=True)
    codes, uniques = pd.factorize(nodes)
    source, target = np.searchsorted(videos, links.video_id.to_numpy()), codes[len(videos):]
    adjacency = sparse.coo_matrix((np.ones(len(links), dtype=np.int8), (source, target)),
                                  shape=(len(uniques), len(uniques)))
    component = csgraph.connected_components(adjacency, directed=False)[1][:len(videos)]
    # videos are sorted, so the first video of each component is its smallest
    _, first = np.unique(component, return_index=True)
    smallest = dict(zip(component[first], videos[first]))
    return pd.Series([f"g-{smallest[c]}" for c in component], index=pd.Index(videos, name="video_id"),
                     name="group")


# --- Identity files -------------------------------------------------------------------------------

def read_identity_csv(path: str | Path, identity_columns: Sequence[str] = IDENTITY_COLUMNS) -> pd.DataFrame:
    """A CSV mapping `video_id` (or `video`, a file name) to identity columns; one row per video_id."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"IDENTITY_CSV {path} does not exist; set IDENTITY_CSV to '' if you have none")
    table = pd.read_csv(path, dtype=str, keep_default_na=True)
    key = "video_id" if "video_id" in table else "video" if "video" in table else None
    found = [c for c in identity_columns if c in table]
    if key is None or not found:
        raise ValueError(f"IDENTITY_CSV {path} needs a 'video_id' or 'video' column and at least one of "
                         f"{list(identity_columns)}; it has {list(table.columns)}")
    table = pd.DataFrame({"video_id": table[key].map(video_id_of), **{c: table[c] for c in found}})
    table = table.dropna(subset=["video_id"]).drop_duplicates()
    repeated = table.video_id[table.video_id.duplicated()].unique()
    if len(repeated):
        raise ValueError(f"IDENTITY_CSV {path} gives different identities to {len(repeated)} video(s), e.g. "
                         f"{list(repeated[:3])}: keep one row per video")
    return table.reset_index(drop=True)


def add_identities(faces: pd.DataFrame, identities: pd.DataFrame, source: str = "the identity table",
                   target: str = "faces.csv") -> pd.DataFrame:
    """faces with the identity columns of `identities` (by video_id) filled in where faces has none."""
    out = faces.copy()
    table = identities.set_index("video_id")
    for column in table.columns:
        mapped = out.video_id.map(table[column])
        if column not in out:
            out[column] = mapped
            continue
        own = out[column].map(_token)
        other = mapped.map(_token)
        clash = own.notna() & other.notna() & (own != other)
        if clash.any():
            examples = sorted(out.video_id[clash].unique())[:3]
            raise ValueError(f"{target}'s {column!r} column and {source} disagree for {out.video_id[clash].nunique()} "
                             f"video(s), e.g. {examples}: remove the column from one of them")
        out[column] = own.where(own.notna(), other)
    return out


def frame_identities(frames: pd.DataFrame, identity_columns: Sequence[str] = IDENTITY_COLUMNS,
                     source: str = "frames.csv") -> pd.DataFrame:
    """The identity columns frames.csv carries from its dataset layout (helpers.layouts), one row per video_id.

    faces.csv does not carry them, so notebook 03 takes them from FRAMES_CSV: an FF++ or Celeb-DF tree
    is then split by person without an IDENTITY_CSV. Empty (only video_id) when the layout has none.
    """
    found = [c for c in identity_columns if c in frames.columns]
    table = frames[["video_id", *found]].dropna(subset=["video_id"])
    if not found:
        return table.drop_duplicates().reset_index(drop=True)
    table = table.assign(**{c: table[c].map(_token) for c in found}).dropna(subset=found, how="all").drop_duplicates()
    repeated = table.video_id[table.video_id.duplicated()].unique()
    if len(repeated):
        raise ValueError(f"{source} gives different identities to {len(repeated)} video(s), e.g. {list(repeated[:3])}: "
                         "rerun notebook 01, which writes one identity per video")
    return table.reset_index(drop=True)


# --- Assigning groups to splits ------------------------------------------------------------------------

def parse_fractions(fractions) -> dict[str, float]:
    """{"train", "val", "test"} -> fraction, from a mapping or a (train, val, test) sequence summing to 1."""
    if isinstance(fractions, Mapping):
        unknown = set(fractions) - set(SPLITS)
        if unknown:
            raise ValueError(f"fractions name unknown splits {sorted(unknown)}; use {SPLITS}")
        values = {s: float(fractions.get(s, 0.0)) for s in SPLITS}
    else:
        if len(fractions) != 3:
            raise ValueError(f"fractions must be (train, val, test), got {fractions!r}")
        values = dict(zip(SPLITS, map(float, fractions)))
    if any(not 0 <= v <= 1 for v in values.values()) or abs(sum(values.values()) - 1) > 1e-6:
        raise ValueError(f"split fractions must lie in [0, 1] and sum to 1, got {values}: "
                         "check VAL_FRACTION and TEST_FRACTION (their sum must stay below 1)")
    if values["train"] <= 0:
        raise ValueError(f"the training split needs a positive fraction, got {values}")
    return values


def tolerance(group_faces: Sequence[int], fractions) -> float:
    """The promised bound on |achieved - requested| share of faces per split: (k - 1) x largest group / faces.

    k is the number of splits with a positive fraction. It holds whenever the greedy pass gives every
    such split a group on its own (no split was forced non-empty; the audit says when one was).
    """
    sizes = np.asarray(group_faces, dtype=float)
    k = sum(f > 0 for f in parse_fractions(fractions).values())
    return float((k - 1) * sizes.max() / sizes.sum()) if sizes.size and sizes.sum() else 0.0


def assign_groups(groups: pd.DataFrame, fractions, seed: int, max_steps: int = 300,
                  swap_candidates: int = 400) -> tuple[pd.Series, dict]:
    """Whole groups to splits: faces near the requested fractions, each split's FAKE share near the overall one.

    `groups` has one row per group (index: group id) with columns `faces` and `fakes`. Returns the split
    of each group and notes: forced moves, warnings, the tolerance.

    1. Greedy, largest groups first (ties in a seeded random order): a group goes to the split that
       best keeps the REAL/FAKE balance among those with room for it, else to the split furthest below
       its target. A split overshoots at most once, by less than the largest group, so every split's
       share of faces ends within `tolerance()` of its request.
    2. A split with a positive fraction but no group takes the smallest group of a split with several.
    3. Local search: single moves and pairwise swaps that lower the squared REAL and FAKE count errors,
       never pushing a split's face count outside the tolerance nor emptying a split.
    With fewer groups than splits to fill, groups go to test, then train, then val (FILL_ORDER).
    """
    fractions = parse_fractions(fractions)
    active = [s for s in SPLITS if fractions[s] > 0]
    notes: dict = {"forced": [], "warnings": []}
    groups = groups.sort_index()
    if groups.empty:
        return pd.Series(dtype=object, name="split"), {**notes, "tolerance": 0.0}
    sizes = groups.faces.to_numpy(dtype=float)
    fakes = groups.fakes.to_numpy(dtype=float)
    reals = sizes - fakes
    notes["tolerance"] = tolerance(sizes, fractions)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(groups))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]

    if len(groups) < len(active):
        fill = [s for s in FILL_ORDER if s in active]
        chosen = {int(g): fill[i] for i, g in enumerate(order[::-1])}  # the smallest group goes to test
        notes["warnings"].append(
            f"only {len(groups)} identity group(s) for {len(active)} splits: filled {', '.join(fill[:len(groups)])} "
            f"with one group each and left {', '.join(fill[len(groups):])} empty; fractions cannot be met")
        return pd.Series({groups.index[g]: s for g, s in chosen.items()}, name="split").sort_index(), notes

    k = len(active)
    target = np.array([fractions[s] for s in active]) * sizes.sum()
    target_fake = np.array([fractions[s] for s in active]) * fakes.sum()
    target_real = target - target_fake
    where = np.full(len(groups), -1)
    n, nf = np.zeros(k), np.zeros(k)
    for g in order:
        deficit = target - n
        room = np.flatnonzero(deficit >= sizes[g] - 1e-9)
        if room.size:
            # the placement that lowers the squared REAL/FAKE errors most
            gain = reals[g] * (target_real - (n - nf)) + fakes[g] * (target_fake - nf)
            s = int(room[np.argmax(gain[room])])
        else:
            s = int(np.argmax(deficit))
        where[g] = s
        n[s] += sizes[g]
        nf[s] += fakes[g]

    for s in range(k):
        if (where == s).any():
            continue
        counts = np.bincount(where, minlength=k)
        donors = np.flatnonzero((counts[where] > 1))
        g = int(donors[np.argmin(sizes[donors])]) if donors.size else None
        if g is None:
            continue
        notes["forced"].append({"group": str(groups.index[g]), "faces": int(sizes[g]),
                                "from": active[where[g]], "to": active[s]})
        n[where[g]] -= sizes[g]
        nf[where[g]] -= fakes[g]
        where[g] = s
        n[s] += sizes[g]
        nf[s] += fakes[g]
    if notes["forced"]:
        notes["warnings"].append(f"{len(notes['forced'])} split(s) got no group from the greedy pass; a group was "
                                 "moved there, so the face fractions may miss the stated tolerance")

    where = _improve(where, sizes, fakes, target, target_fake, notes["tolerance"] * sizes.sum(), rng, max_steps,
                     swap_candidates)
    split = pd.Series([active[s] for s in where], index=groups.index, name="split")
    return split, notes


def _improve(where, sizes, fakes, target, target_fake, bound, rng, max_steps, swap_candidates) -> np.ndarray:
    """Local search of assign_groups: best single move or swap per step while the error drops."""
    k = len(target)
    where = where.copy()
    reals = sizes - fakes
    target_real = target - target_fake
    # a split already outside the bound (after a forced move) may not get worse
    cap = np.maximum(bound, np.abs(np.bincount(where, weights=sizes, minlength=k) - target)) + 1e-9
    for _ in range(max_steps):
        n = np.bincount(where, weights=sizes, minlength=k)
        dr = np.bincount(where, weights=reals, minlength=k) - target_real
        df = np.bincount(where, weights=fakes, minlength=k) - target_fake
        counts = np.bincount(where, minlength=k)
        best = (-1e-9, None)
        for a in range(k):
            members = np.flatnonzero(where == a)
            if counts[a] < 2 or not members.size:
                continue
            for b in range(k):
                if b == a:
                    continue
                r, f, m = reals[members], fakes[members], sizes[members]
                delta = ((dr[a] - r) ** 2 - dr[a] ** 2 + (df[a] - f) ** 2 - df[a] ** 2
                         + (dr[b] + r) ** 2 - dr[b] ** 2 + (df[b] + f) ** 2 - df[b] ** 2)
                ok = (np.abs(n[a] - m - target[a]) <= cap[a]) & (np.abs(n[b] + m - target[b]) <= cap[b])
                delta = np.where(ok, delta, np.inf)
                i = int(np.argmin(delta))
                if delta[i] < best[0]:
                    best = (delta[i], ("move", members[i], b))
        for a in range(k):
            for b in range(a + 1, k):
                left, right = np.flatnonzero(where == a), np.flatnonzero(where == b)
                if not left.size or not right.size:
                    continue
                if left.size > swap_candidates:
                    left = np.sort(rng.choice(left, swap_candidates, replace=False))
                if right.size > swap_candidates:
                    right = np.sort(rng.choice(right, swap_candidates, replace=False))
                r = reals[right][None, :] - reals[left][:, None]  # what a gains (b loses)
                f = fakes[right][None, :] - fakes[left][:, None]
                m = r + f
                delta = ((dr[a] + r) ** 2 - dr[a] ** 2 + (df[a] + f) ** 2 - df[a] ** 2
                         + (dr[b] - r) ** 2 - dr[b] ** 2 + (df[b] - f) ** 2 - df[b] ** 2)
                ok = (np.abs(n[a] + m - target[a]) <= cap[a]) & (np.abs(n[b] - m - target[b]) <= cap[b])
                delta = np.where(ok, delta, np.inf)
                i, j = np.unravel_index(int(np.argmin(delta)), delta.shape)
                if delta[i, j] < best[0]:
                    best = (delta[i, j], ("swap", left[i], right[j]))
        if best[1] is None:
            break
        step = best[1]
        if step[0] == "move":
            where[step[1]] = step[2]
        else:
            where[step[1]], where[step[2]] = where[step[2]], where[step[1]]
    return where


def split_by_identity(faces: pd.DataFrame, fractions, seed: int, identity_columns: Sequence[str] = IDENTITY_COLUMNS,
                      name_pattern: str = NAME_PATTERN) -> pd.DataFrame:
    """The usable rows of `faces` (status ok) with their identity `group` and their `split`.

    fractions: {"train", "val", "test"} -> share of faces, or (train, val, test). The same faces and
    seed give the same split whatever the row order. Every split's share of faces lands within
    `tolerance()` (2 x largest group / faces for three splits) of its request unless a split had to be
    forced non-empty; each split's FAKE share comes close to the overall one. With >= 3 groups every
    split with a positive fraction gets at least one group. `attrs["assignment"]` holds the notes of
    `assign_groups`. Raises LeakageError if any group or identity link spans two splits.
    """
    usable = faces[faces.status == "ok"] if "status" in faces else faces
    usable = usable.copy()
    if usable.empty:
        out = usable.assign(group=pd.Series(dtype=str), split=pd.Series(dtype=str))
        out.attrs["assignment"] = {"forced": [], "warnings": ["no usable faces"], "tolerance": 0.0}
        return out
    usable["video_id"] = usable.video_id.map(_token)
    groups = group_videos(usable, identity_columns, name_pattern)
    usable["group"] = usable.video_id.map(groups)
    per_group = usable.assign(fake=usable.label.eq("FAKE")).groupby("group").agg(faces=("fake", "size"),
                                                                                  fakes=("fake", "sum"))
    where, notes = assign_groups(per_group, fractions, seed)
    usable["split"] = usable.group.map(where)
    usable.attrs["assignment"] = notes
    check_disjoint(usable, identity_columns, name_pattern)
    return usable


def check_disjoint(split: pd.DataFrame, identity_columns: Sequence[str] = IDENTITY_COLUMNS,
                   name_pattern: str = NAME_PATTERN) -> dict:
    """Groups and identity links that span two splits, recounted from the links; raises LeakageError if any."""
    if split.empty:
        return {"groups_spanning_splits": 0, "links_crossing_splits": 0}
    spanning = split.groupby("group").split.nunique()
    spanning = spanning[spanning > 1]
    links = identity_links(split, identity_columns, name_pattern)
    pairs = links[["video_id", "node"]].merge(split[["video_id", "split"]].drop_duplicates(), on="video_id")
    per_node = pairs.groupby("node").split.nunique()
    crossing = per_node[per_node > 1]
    counts = {"groups_spanning_splits": int(len(spanning)), "links_crossing_splits": int(len(crossing))}
    if len(spanning) or len(crossing):
        raise LeakageError(
            f"the split leaks identities: {len(spanning)} group(s) span two splits (e.g. {list(spanning.index[:3])}) "
            f"and {len(crossing)} identity link(s) cross splits (e.g. {list(crossing.index[:3])}). Do not use it: "
            "this is a bug in helpers.splits, please report it with the faces.csv that caused it")
    return counts


# --- Class balance of the training split -------------------------------------------------------------

def balance_training(split: pd.DataFrame, mode: str = "none", seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Balance REAL/FAKE in train: "none", "undersample" (drop random majority-class faces) or "weights".

    Undersampling works by face, not by group: dropping rows cannot create leakage, and keeping some
    faces of every fake video keeps more variety than dropping whole groups (which mix both classes).
    "weights" gives train rows the inverse class frequency, normalised to mean 1; val/test weigh 1.
    """
    if mode not in BALANCE_MODES:
        raise ValueError(f"BALANCE must be one of {BALANCE_MODES}, got {mode!r}")
    out = split.copy()
    out["weight"] = 1.0
    train = out.split.eq("train")
    before = out[train].label.value_counts().reindex(["REAL", "FAKE"], fill_value=0)
    info = {"mode": mode, "unit": "face" if mode == "undersample" else None,
            "train_before": {k: int(v) for k, v in before.items()}, "dropped_faces": 0, "weights": None, "note": ""}
    if mode != "none" and (before == 0).any():
        info["note"] = "the training split holds one class only: nothing to balance"
    elif mode == "undersample":
        majority = before.idxmax()
        surplus = int(before.max() - before.min())
        candidates = np.flatnonzero((train & out.label.eq(majority)).to_numpy())
        rng = np.random.default_rng([int(seed), 1])
        keep = np.ones(len(out), dtype=bool)
        keep[rng.choice(candidates, size=surplus, replace=False)] = False
        out = out[keep]
        info["dropped_faces"] = surplus
    elif mode == "weights":
        share = before / before.sum()
        weights = {label: float(1 / (2 * share[label])) for label in before.index}
        out.loc[train, "weight"] = out.loc[train, "label"].map(weights).astype(float)
        info["weights"] = weights
    after = out[out.split.eq("train")].label.value_counts().reindex(["REAL", "FAKE"], fill_value=0)
    info["train_after"] = {k: int(v) for k, v in after.items()}
    return out, info


# --- Perceptual hashes and near-duplicates --------------------------------------------------------

def perceptual_hash(image: np.ndarray) -> np.uint64:
    """64-bit pHash: the 8x8 lowest DCT frequencies of a 32x32 grey copy, each above or below their median.

    A uniform brightness shift moves only the DC term and JPEG noise barely touches the low
    frequencies, so re-encoded or re-exposed copies of a face stay within a few bits.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.shape[2] == 3 else image[..., 0]
    small = cv2.resize(image.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low)
    return np.packbits(bits).view(">u8")[0].astype(np.uint64)


def hash_images(paths: Sequence[str], progress: bool = True) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """pHashes of image files as uint64, and (position, reason) for each file that could not be read."""
    hashes = np.zeros(len(paths), dtype=np.uint64)
    failed = []
    for i, path in enumerate(runtime.progress(paths, desc="hashing faces", unit="face", disable=not progress)):
        if not isinstance(path, (str, Path)) or not path or not Path(path).is_file():
            # checked first: OpenCV would log a warning for every missing file
            failed.append((i, f"{path}: the face crop does not exist (rerun notebook 02 or fix face_path)"))
            continue
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None or image.size == 0:
            failed.append((i, f"{path}: cannot be read as an image (empty or corrupt)"))
            continue
        hashes[i] = perceptual_hash(image)
    return hashes, failed


def nearest_hamming(query: np.ndarray, reference: np.ndarray, chunk_cells: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """For each query hash, the Hamming distance to its nearest reference hash and that hash's position.

    Vectorised XOR and popcount over chunks of queries; with no reference the distance is HASH_BITS + 1
    and the position -1.
    """
    query = np.asarray(query, dtype=np.uint64)
    reference = np.asarray(reference, dtype=np.uint64)
    distance = np.full(len(query), HASH_BITS + 1, dtype=np.int64)
    position = np.full(len(query), -1, dtype=np.int64)
    if not len(query) or not len(reference):
        return distance, position
    step = max(1, chunk_cells // len(reference))
    for start in range(0, len(query), step):
        block = np.bitwise_count(query[start:start + step, None] ^ reference[None, :])
        position[start:start + step] = block.argmin(axis=1)
        distance[start:start + step] = block.min(axis=1)
    return distance, position


def find_near_duplicates(split: pd.DataFrame, threshold: int = 6, path_column: str = "face_path",
                         max_examples: int = 20, progress: bool = True) -> tuple[pd.Series, dict]:
    """Hamming distance from each val/test face to its nearest train face, and a report of those within `threshold`.

    Returns the distance per row (NA for train rows and unreadable crops) and a dict with the count
    per split, examples (closest first) and the unreadable crops, which are recorded, never fatal.
    """
    if not 0 <= int(threshold) <= HASH_BITS:
        raise ValueError(f"DUPLICATE_THRESHOLD is in bits of a {HASH_BITS}-bit hash: 0..{HASH_BITS}, got {threshold}")
    paths = split[path_column].tolist() if path_column in split else [None] * len(split)
    hashes, failed = hash_images(paths, progress)
    readable = np.ones(len(split), dtype=bool)
    readable[[i for i, _ in failed]] = False
    which = split.split.to_numpy()
    train = np.flatnonzero((which == "train") & readable)
    distance = pd.Series(pd.NA, index=split.index, dtype="Int64", name="nearest_train_distance")
    report = {"method": f"{HASH_BITS}-bit DCT perceptual hash (pHash) of {path_column}, Hamming distance",
              "threshold_bits": int(threshold), "train_faces_compared": int(len(train)), "count": {},
              "compared": {}, "distance_quantiles": {}, "examples": [],
              "unreadable": {"count": len(failed), "examples": [reason for _, reason in failed[:10]]}}
    examples = []
    for name in ("val", "test"):
        rows = np.flatnonzero((which == name) & readable)
        d, j = nearest_hamming(hashes[rows], hashes[train])
        if len(train):
            distance.iloc[rows] = d
        close = d <= threshold if len(train) else np.zeros(len(rows), dtype=bool)
        report["compared"][name] = int(len(rows))
        report["count"][name] = int(close.sum())
        if len(rows) and len(train):
            report["distance_quantiles"][name] = {q: round(float(np.quantile(d, float(q))), 1)
                                                  for q in ("0.0", "0.01", "0.05", "0.5")}
        for r, t, dist in zip(rows[close], train[j[close]], d[close]):
            examples.append({"split": name, "face_path": str(paths[r]), "train_face_path": str(paths[t]),
                             "distance": int(dist), "video_id": str(split.video_id.iloc[r]),
                             "train_video_id": str(split.video_id.iloc[t]), "group": str(split.group.iloc[r]),
                             "train_group": str(split.group.iloc[t])})
    examples.sort(key=lambda e: (e["distance"], e["split"] != "test", e["face_path"]))
    report["examples"] = examples[:max_examples]
    return distance, report


# --- Identity from faces -------------------------------------------------------------------------------

def _stamp(path: str) -> str:
    try:
        st = Path(path).stat()
    except OSError:
        return "absent"
    return f"{st.st_size}:{st.st_mtime_ns}"


def cached_embeddings(paths: Sequence[str], landmarks, cache: Path | None, progress: bool, margin: float,
                      workers: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """embed_faces with a cache: crops whose path, size and modification time match the cache are not embedded again.

    dlib embeds about 12 faces per CPU-second, hours for DFDC, so a rerun of notebook 03 (another
    seed, another fraction) must not pay for it twice. The cache is rewritten atomically.
    """
    from helpers import identity  # noqa: PLC0415

    paths = [str(p) for p in paths]
    stamps = [_stamp(p) for p in paths]
    out = np.full((len(paths), identity.DIM), np.nan, dtype=np.float32)
    known: dict[tuple[str, str], np.ndarray] = {}
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as saved:
                known = {(p, s): e for p, s, e in zip(saved["paths"], saved["stamps"], saved["embeddings"])}
        except (OSError, ValueError, KeyError):
            known = {}  # a broken cache is only a lost speed-up
    todo = [i for i, key in enumerate(zip(paths, stamps)) if key not in known]
    for i, key in enumerate(zip(paths, stamps)):
        if key in known:
            out[i] = known[key]
    failed: list[tuple[int, str]] = []
    if todo:
        marks = None if landmarks is None else np.asarray(landmarks)[todo]
        fresh, failed_todo = identity.embed_faces([paths[i] for i in todo], marks, progress=progress, margin=margin,
                                                  workers=workers)
        out[todo] = fresh
        failed = [(todo[j], reason) for j, reason in failed_todo]
    if cache is not None and todo:
        ok = np.isfinite(out).all(axis=1)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.stem}.{os.getpid()}.npz")
        np.savez(partial, paths=np.array(paths)[ok], stamps=np.array(stamps)[ok], embeddings=out[ok])
        partial.replace(cache)
    return out, failed


EMBED_FACES_PER_VIDEO = 2  # a video's identity from at most this many of its faces (dlib: ~12 faces per CPU-second)


def embed_identities(faces: pd.DataFrame, threshold: float, margin: float = 1.3, progress: bool = True,
                     workers: int = 1, cache: Path | None = None,
                     per_video: int = EMBED_FACES_PER_VIDEO) -> tuple[pd.Series, pd.DataFrame, dict]:
    """Face-embedding identity clusters of the usable faces' videos: (cluster per video_id, video embeddings, info).

    Every face crop gets a dlib descriptor (helpers.identity), each video the mean of its faces', and
    videos whose descriptors are within `threshold` (average linkage) form one cluster: the same actor
    in unrelated source videos, and a fake with the swap source it shows. Unreadable crops are
    recorded, never fatal; a video with no descriptor is a cluster of its own.
    """
    from helpers import identity  # noqa: PLC0415 - dlib is loaded only when embeddings are asked for

    usable = faces[faces.status == "ok"] if "status" in faces else faces
    if per_video:
        # the first faces of each video by frame; the video's descriptor is their mean, so a few suffice
        order = [c for c in ("video_id", "frame_index", "face_index") if c in usable.columns]
        usable = usable.sort_values(order, kind="stable").groupby("video_id", sort=False).head(per_video)
    usable = usable.reset_index(drop=True)
    try:
        landmarks = identity.landmark_fractions(usable)
    except KeyError:  # a hand-made faces.csv without landmarks: place the face from the crop geometry
        landmarks = None
    embeddings, failed = cached_embeddings(usable.face_path.tolist(), landmarks, cache, progress, margin, workers)
    videos = identity.video_embeddings(usable, embeddings)
    labels = identity.cluster_identities(videos, threshold)
    clusters = pd.Series([f"face-cluster-{c}" for c in labels], index=pd.Index(videos.video_id, name="video_id"),
                         name=FACE_CLUSTER_COLUMN)
    info = {"method": "dlib ResNet face descriptors (face-recognition-models), mean per video, average linkage",
            "threshold": float(threshold), **identity.cluster_summary(labels),
            "faces_embedded": int(len(usable) - len(failed)), "faces_per_video_at_most": int(per_video) or None,
            "unreadable": {"count": len(failed), "examples": [reason for _, reason in failed[:10]]}}
    return clusters, videos, info


def identity_matches(videos: pd.DataFrame, split: pd.DataFrame, threshold: float, max_examples: int = 20) -> dict:
    """The audit's embedding check: val/test videos whose nearest train video is within `threshold` (the same person?)."""
    from helpers import identity  # noqa: PLC0415

    split_of_video = split.drop_duplicates("video_id").set_index("video_id").split
    matches = identity.cross_split_matches(videos, split_of_video, threshold)
    close = matches[matches.same_identity]
    return {"method": "nearest train video by dlib descriptor distance (mean per video)", "threshold": float(threshold),
            "compared": {s: int((matches.split == s).sum()) for s in ("val", "test")},
            "count": {s: int((close.split == s).sum()) for s in ("val", "test")},
            "distance_quantiles": {s: {q: round(float(matches.distance[matches.split == s].quantile(float(q))), 3)
                                       for q in ("0.0", "0.05", "0.5")}
                                   for s in ("val", "test") if matches.distance[matches.split == s].notna().any()},
            "examples": _records(close.head(max_examples)),
            "note": _matches_note(len(close), len(matches))}


def _matches_note(close: int, compared: int) -> str:
    """How to read the cross-split matches, in words."""
    if not compared:
        return "no validation or test video to compare"
    if close == 0:
        return "no val/test video is within the threshold of a training video: good"
    share = close / compared
    if share > 0.25:
        return (f"{close} of {compared} val/test videos have a training video within the threshold, too many to be "
                "leaks of a few actors: the descriptors do not separate these faces well (tiny or upscaled faces, "
                "as in the demo, do that), so this check says little here; the identity links still hold")
    return (f"{close} of {compared} val/test videos have a training video within the threshold that average linkage "
            "kept in another cluster: look at those pairs")


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain dicts (NaN -> None), for the JSON audit."""
    return [{k: (None if isinstance(v, float) and np.isnan(v) else (round(v, 4) if isinstance(v, float) else v))
             for k, v in row.items()} for row in frame.to_dict("records")]


# --- Held-out faces detected on themselves ----------------------------------------------------------

def _detect_frames(frames: pd.DataFrame, out_dir: Path, face_settings: dict, keep: str | None = None,
                   workers: int = 1) -> pd.DataFrame:
    """faces.csv rows for `frames` (frames.csv rows), detected on each frame itself with notebook 02's settings."""
    from helpers import faces as F  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    frames_csv = out_dir / "frames_subset.csv"
    frames.to_csv(frames_csv, index=False)
    kwargs = {k: v for k, v in face_settings.items() if k != "reuse_original_boxes"}
    if keep:
        kwargs["keep"] = keep
    # In a child process: TensorFlow (MTCNN) loaded next to torch in one process can segfault (libtriton),
    # and this notebook's kernel goes on to train the shortcut baseline with torch.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_fresh_if_changed, F.extract_faces, frames_csv, out_dir, reuse_original_boxes=False,
                           workers=workers, allow_empty=True, **kwargs).result()


def _fresh_if_changed(stage, *args, **kwargs):
    """Run a resumable stage; when its folder holds results of other settings, redo it with them (fresh)."""
    from helpers.manifest import SettingsChanged  # noqa: PLC0415

    try:
        return stage(*args, **kwargs)
    except SettingsChanged:
        # notebook 02 (or this notebook's settings) changed since the last run: the old crops are stale
        return stage(*args, **kwargs, fresh=True)


def redetect_heldout(split: pd.DataFrame, frames: pd.DataFrame, out_dir: Path, face_settings: dict,
                     workers: int = 1) -> tuple[pd.DataFrame, dict]:
    """Validation and test fakes cropped with their original's boxes, cropped again with boxes found on themselves.

    Reusing the original's boxes is a training-time speed-up only: a detector never has them at use
    time, and crops aligned exactly like the real video's would tell the model which faces were made
    from it. Frames whose own detection finds no face leave the split (counted in the returned info).
    """
    reused = split.split.isin(["val", "test"]) & split.get("box_source", pd.Series("", index=split.index)).eq("original")
    info = {"reused_boxes_in_heldout": int(reused.sum()), "redetected_faces": 0, "lost_frames": 0}
    if not reused.any():
        return split, info
    wanted = set(split.loc[reused, "frame_path"])
    subset = frames[frames.frame_path.isin(wanted)]
    missing = wanted - set(subset.frame_path)
    if missing:
        raise ValueError(f"{len(missing)} held-out frame(s) are not in frames.csv (e.g. {sorted(missing)[0]}): pass "
                         "the FRAMES_CSV notebook 02 read")
    fresh = _detect_frames(subset, out_dir, face_settings, workers=workers)
    fresh = fresh[fresh.status == "ok"]
    meta = split.loc[reused].drop_duplicates("frame_path").set_index("frame_path")
    fresh = fresh.join(meta[[c for c in split.columns if c not in fresh.columns]], on="frame_path")
    out = pd.concat([split.loc[~reused], fresh[[c for c in split.columns if c in fresh.columns]]], ignore_index=True)
    info.update(redetected_faces=int(len(fresh)), lost_frames=int(len(wanted - set(fresh.frame_path))))
    return out.reindex(columns=split.columns), info


def evaluation_faces(split: pd.DataFrame, frames: pd.DataFrame, out_dir: Path, face_settings: dict,
                     frames_per_video: int, seed: int = 447, workers: int = 1) -> tuple[pd.DataFrame, dict]:
    """eval.csv: `frames_per_video` uniform frames of every val and test video and every face in them.

    This is how a detector meets a video at use time (helpers.predict does the same): many frames,
    every face (in two-person DFDC videos often only one face is swapped), each detected on the frame
    itself. The training notebooks score these faces for the calibration (val) and the reported
    numbers (test), aggregating a video's faces with metrics.aggregate_face_scores.
    """
    from helpers import frames as FR  # noqa: PLC0415

    held = split[split.split.isin(["val", "test"])]
    videos = frames[frames.video_id.isin(set(held.video_id))].drop_duplicates("video_id")
    columns = ["video_id", "part", "video_path", "label", "original"]
    table = videos[columns].assign(status="ok", reason="")
    sampled = _fresh_if_changed(FR.sample_frames, "", out_dir / "frames", frames_per_video=frames_per_video,
                                strategy="uniform", seed=seed, jpeg_quality=int(face_settings.get("jpeg_quality", 95)),
                                videos=table, workers=workers)
    faces = _detect_frames(sampled, out_dir / "faces", face_settings, keep="all", workers=workers)
    ok = faces[faces.status == "ok"].copy()
    per_video = held.drop_duplicates("video_id").set_index("video_id")
    carry = [c for c in held.columns if c not in ok.columns and c in per_video.columns and c != "nearest_train_distance"]
    ok = ok.join(per_video[carry], on="video_id")
    ok["weight"] = 1.0
    ok["nearest_train_distance"] = pd.NA
    info = {"frames_per_video": int(frames_per_video), "videos": int(held.video_id.nunique()),
            "videos_with_faces": int(ok.video_id.nunique()), "frames": int(sampled.status.eq("ok").sum()),
            "faces": int(len(ok)), "keep": "all", "detected_on": "each frame itself"}
    return ok.reset_index(drop=True), info


# --- The stage ---------------------------------------------------------------------------------------

def summarize_splits(split: pd.DataFrame) -> dict:
    """Groups, videos, faces, REAL, FAKE and fake share per split."""
    summary = {}
    for name in SPLITS:
        part = split[split.split == name]
        fake = int(part.label.eq("FAKE").sum())
        summary[name] = {"groups": int(part.group.nunique()), "videos": int(part.video_id.nunique()),
                         "faces": int(len(part)), "real": int(len(part) - fake), "fake": fake,
                         "fake_share": round(fake / len(part), 4) if len(part) else None}
    return summary


def make_split(faces_csv: str | Path, out_dir: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.15,
               seed: int = 447, balance: str = "none", duplicate_threshold: int = 6, identity_csv: str | Path = "",
               identity_columns: Sequence[str] = IDENTITY_COLUMNS, name_pattern: str = NAME_PATTERN,
               max_examples: int = 20, progress: bool = True, group_by: str = "identity",
               embedding_threshold: float | None = None, frames_csv: str | Path = "", test_frames_per_video: int = 0,
               workers: int = 1) -> tuple[pd.DataFrame, dict]:
    """Split faces.csv by identity, balance train, audit; writes out_dir/split.csv, split_audit.json (and eval.csv).

    group_by: "identity" (every identity link, face-embedding clusters included) or "part" (whole
    dataset parts held out, as the DFDC winners' folds did, plus every identity link).
    embedding_threshold: the dlib descriptor distance within which videos count as one person
    (None: helpers.identity.DEFAULT_THRESHOLD; 0: no embeddings). frames_csv: notebook 01's
    frames.csv, whose layout identity columns (FF++, Celeb-DF) fill those faces.csv lacks, by video_id
    (a value contradicting faces.csv's or IDENTITY_CSV's raises); it is also needed to re-detect
    held-out fakes cropped with their original's boxes and, with test_frames_per_video > 0, to build
    eval.csv (many frames, every face, of each val/test video).
    Returns the split (usable faces + group, split, weight, nearest_train_distance) and the audit.
    """
    if balance not in BALANCE_MODES:
        raise ValueError(f"BALANCE must be one of {BALANCE_MODES}, got {balance!r}")
    if group_by not in GROUP_BY:
        raise ValueError(f"GROUP_BY must be one of {GROUP_BY}, got {group_by!r}")
    fractions = parse_fractions({"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction})
    faces = read_faces_manifest(faces_csv)
    identities_from, named_by_csv = [], None
    if identity_csv:
        table = read_identity_csv(identity_csv, identity_columns)
        faces = add_identities(faces, table, f"IDENTITY_CSV {identity_csv}")
        named_by_csv = set(table.video_id)
        identities_from.append("IDENTITY_CSV")  # the paths are the audit's identity_csv and heldout.frames_csv
    frames = None
    if frames_csv:
        from helpers.frames import read_frames_manifest  # noqa: PLC0415

        frames = read_frames_manifest(frames_csv)
        # faces.csv drops the layout's identity columns frames.csv has (FF++, Celeb-DF): they link people too
        layout = frame_identities(frames, identity_columns, f"FRAMES_CSV {frames_csv}")
        if len(layout.columns) > 1 and len(layout):
            faces = add_identities(faces, layout, f"FRAMES_CSV {frames_csv} (the dataset layout's identities)",
                                   f"faces.csv with IDENTITY_CSV {identity_csv}" if identity_csv else "faces.csv")
            identities_from.append("FRAMES_CSV")
    usable = int(faces.status.eq("ok").sum())
    if not usable:
        raise ValueError(f"{faces_csv} holds no usable face (status ok): check notebook 02's output")
    columns = [c for c in identity_columns]
    if group_by == "part":
        faces[PART_COLUMN] = "part:" + faces.part.astype(str)
        columns.append(PART_COLUMN)
    face_settings = _face_settings(faces_csv)
    if embedding_threshold is None:
        from helpers.identity import DEFAULT_THRESHOLD  # noqa: PLC0415

        embedding_threshold = DEFAULT_THRESHOLD
    embedding_info, videos = None, None
    if embedding_threshold:
        clusters, videos, embedding_info = embed_identities(faces, embedding_threshold,
                                                            float(face_settings.get("margin", 1.3)), progress, workers,
                                                            Path(out_dir) / "face_embeddings.npz")
        groups_without = int(group_videos(faces[faces.status == "ok"], columns, name_pattern).nunique())
        faces[FACE_CLUSTER_COLUMN] = faces.video_id.map(clusters)
        columns.append(FACE_CLUSTER_COLUMN)
    split = split_by_identity(faces, fractions, seed, columns, name_pattern)
    assignment = split.attrs.get("assignment", {})
    if embedding_info is not None:
        embedding_info.update(groups_without_embeddings=groups_without, groups_with_embeddings=int(split.group.nunique()),
                          groups_merged_by_embeddings=groups_without - int(split.group.nunique()))
    group_sizes = split.groupby("group").size()
    before = split.split.value_counts().reindex(SPLITS, fill_value=0) / len(split)
    fake_share = float(split.label.eq("FAKE").mean())
    heldout: dict = {"frames_csv": str(frames_csv)}
    out_dir = Path(out_dir)
    if frames is not None:
        split, heldout["redetection"] = redetect_heldout(split, frames, out_dir / "redetected", face_settings, workers)
    elif split.split.isin(["val", "test"]).any() and split.get("box_source", pd.Series(dtype=str)).eq("original").any():
        raise ValueError(f"{faces_csv} crops some fakes with their original's boxes (REUSE_ORIGINAL_BOXES), and those "
                         "must be detected on themselves in validation and test: set FRAMES_CSV to notebook 01's "
                         "frames.csv")
    split, balance_info = balance_training(split, balance, seed)
    split["nearest_train_distance"], duplicates = find_near_duplicates(split, duplicate_threshold,
                                                                       max_examples=max_examples, progress=progress)
    leakage = check_disjoint(split, columns, name_pattern)
    links = identity_links(split, columns, name_pattern)
    originals = {node[len("video:"):] for node in links.node[links.kind == "original"]}
    summary = summarize_splits(split)
    warnings = list(assignment.get("warnings", []))
    if identity_csv and not named_by_csv & set(split.video_id):
        warnings.append(f"IDENTITY_CSV {identity_csv} names none of the videos: is it from another dataset?")
    for name in SPLITS:
        part = split[split.split == name]
        if fractions[name] > 0 and len(part) and part.label.nunique() < 2:
            warnings.append(f"the {name} split holds {part.label.iloc[0]} faces only: AUC is undefined there")
    evaluation = None
    if frames is not None and int(test_frames_per_video) > 0:
        evaluation, heldout["evaluation"] = evaluation_faces(split, frames, out_dir / "eval", face_settings,
                                                             int(test_frames_per_video), seed, workers)
    audit = {
        "faces_csv": str(faces_csv), "identity_csv": str(identity_csv), "seed": int(seed), "group_by": group_by,
        "guarantee": guarantee(group_by, bool(identities_from), bool(embedding_threshold)),
        "rows": {"faces_csv": int(len(faces)), "usable": usable, "not_usable": int(len(faces) - usable),
                 "in_split_csv": int(len(split))},
        "links": {"identity_columns": [c for c in columns if c in faces], "identities_from": identities_from,
                  "name_pattern": name_pattern,
                  **{kind: int((links.kind == kind).sum()) for kind in ("original", "identity", "name")},
                  "absent_originals": len(originals - set(split.video_id)),
                  "videos_with_identity": int(links.video_id[links.kind == "identity"].nunique()),
                  "videos": int(split.video_id.nunique())},
        "groups": {"count": int(len(group_sizes)), "largest_faces": int(group_sizes.max()),
                   "largest_share": round(float(group_sizes.max() / group_sizes.sum()), 4),
                   "median_faces": float(group_sizes.median())},
        "fractions": {"requested": fractions, "achieved": {s: round(float(before[s]), 4) for s in SPLITS},
                      "tolerance": round(float(assignment.get("tolerance", 0.0)), 4),
                      "after_balancing": {s: round(summary[s]["faces"] / len(split), 4) for s in SPLITS}},
        "splits": summary,
        "overall_fake_share": round(fake_share, 4),  # of the usable faces, before balancing
        **leakage,
        "forced_moves": assignment.get("forced", []),
        "warnings": warnings,
        "balance": balance_info,
        "embeddings": embedding_info,
        "identity_matches": identity_matches(videos, split, embedding_threshold, max_examples)
        if videos is not None else None,
        "near_duplicates": duplicates,
        "heldout": heldout,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_split(split, out_dir / "split.csv")
    eval_path = out_dir / "eval.csv"
    if evaluation is not None:
        write_split(evaluation, eval_path)
    elif eval_path.exists():
        eval_path.unlink()  # an eval.csv of an earlier split must not be scored against this one
    (out_dir / "split_audit.json").write_text(json.dumps(audit, indent=2, default=str) + "\n", encoding="utf-8")
    return split, audit


def _face_settings(faces_csv: str | Path) -> dict:
    """Notebook 02's crop settings (its settings.json), or {} for a hand-made faces.csv without one."""
    from helpers import faces as F  # noqa: PLC0415

    reader = getattr(F, "read_settings", None)
    if reader is None:
        return {}
    try:
        return dict(reader(faces_csv))
    except (OSError, ValueError, KeyError):
        return {}


def guarantee(group_by: str, identity_table: bool, embeddings: bool) -> str:
    """What the split promises, in words, for the audit, the notebook and the report."""
    links = ["a fake and its original (present or not)", "FaceForensics++-style names"]
    if identity_table:
        links.append("the identity table's columns")
    if embeddings:
        links.append("videos whose faces' embeddings fall within the threshold (the same actor in unrelated "
                     "videos, and the swap source a fake shows)")
    if group_by == "part":
        links.append("the dataset part")
    text = ("No two videos joined by " + "; ".join(links) + " are in different splits (checked from the links, "
            "not taken from the assignment).")
    if not identity_table:
        text += (" Without actor ids this is as good as the face embedding: two videos of one person that the "
                 "embedding places further apart than the threshold can still land in different splits; the "
                 "audit's identity_matches lists the closest cross-split pairs to look at.")
    return text


def write_split(split: pd.DataFrame, path: str | Path) -> None:
    """Write split.csv: faces.csv's columns, any identity columns, then group, split, weight and distance."""
    from helpers.manifest import write_manifest  # noqa: PLC0415

    extra = [c for c in split.columns if c not in FACE_COLUMNS and c not in SPLIT_COLUMNS]
    rows = split.to_dict("records")
    for row in rows:  # whole bits, not 22.0, and empty where there is no distance
        value = row.get("nearest_train_distance")
        row["nearest_train_distance"] = None if value is None or pd.isna(value) else str(int(value))
    write_manifest(rows, Path(path), [*FACE_COLUMNS, *extra, *SPLIT_COLUMNS],
                   sort_by=["part", "video_id", "frame_index", "face_index"])


def read_split(path: str | Path) -> pd.DataFrame:
    """Read split.csv (written by notebook 03) with ids as strings and integer columns as integers."""
    return read_manifest(path, "notebook 03 (split)", ("frame_index", "face_index", "nearest_train_distance"),
                         ("group", "split", *IDENTITY_COLUMNS, FACE_CLUSTER_COLUMN, PART_COLUMN))


def read_audit(path: str | Path) -> dict:
    """Read split_audit.json (written by notebook 03)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run notebook 03 (split) first")
    return json.loads(path.read_text(encoding="utf-8"))


# --- Summaries for the notebook --------------------------------------------------------------------

def audit_table(audit: dict) -> pd.DataFrame:
    """The audit's per-split counts with the requested and achieved share of faces."""
    table = pd.DataFrame.from_dict(audit["splits"], orient="index")
    table["requested"] = pd.Series(audit["fractions"]["requested"])
    table["achieved"] = pd.Series(audit["fractions"]["achieved"])
    table["near_duplicates"] = pd.Series(audit["near_duplicates"]["count"]).reindex(table.index).astype("Int64")
    return table


def duplicate_examples(audit: dict) -> pd.DataFrame:
    """The near-duplicate pairs the audit found (val/test face, nearest train face, distance in bits)."""
    columns = ["split", "distance", "video_id", "train_video_id", "face_path", "train_face_path"]
    return pd.DataFrame(audit["near_duplicates"]["examples"], columns=columns + ["group", "train_group"])[columns]
