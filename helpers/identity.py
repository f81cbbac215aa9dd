"""Who is in a face crop: dlib's ResNet face descriptors, one embedding per video, identity clusters.

DFDC publishes no actor ids, yet one actor appears in about 20 unrelated source videos and, as the
swap source, in the fakes of other actors' videos. Metadata links a fake to its original only, so
these functions find the rest by face: `embed_faces` -> `video_embeddings` -> `cluster_identities`,
and `cross_split_matches` audits a finished split.

Descriptors are dlib's `dlib_face_recognition_resnet_model_v1` (128-d, from the
`face-recognition-models` package), aligned with its 5-point shape predictor, and are NOT
L2-normalised: dlib trained them so that the Euclidean distance between raw descriptors separates
people (its documented threshold 0.6, tuned on LFW); raw norms are about 1.2-1.65. Every distance
here is that Euclidean distance.

Threshold (DEFAULT_THRESHOLD = 0.55, for clustering; DLIB_THRESHOLD = 0.6, dlib's own, for the
audit in cross_split_matches). Measured with this module's code:
- Real photos, ../shared/data/faces: 30 MTCNN faces of 15 people (10 seen in 2-5 photos; the sets
  and the cropping are in tests/test_identity.py), one face per photo, so no averaging. Same person,
  23 pairs: min 0.26, median 0.43, 95th percentile 0.61, max 0.63; different people, 412 pairs: min
  0.65, 1st percentile 0.68, median 0.86. choose_threshold gives 0.63. Average linkage at 0.55 to
  0.60 gives 17 clusters and none mixes two people; the two people it splits are each one group-photo
  face in near profile or with eyes closed and head tilted (0.63 and 0.62 from their other photo);
  at 0.65 it finds exactly the 15 people.
- The demo (helpers.demo defaults: 98 LFW identities, a REAL and a FAKE video each; 8 frames per
  video, 1556 crops of 128 px): video means. A FAKE shows its swap source: FAKE to its source's REAL,
  98 pairs: min 0.16, median 0.36, 95th 0.52, 99th 0.58, max 0.61 (to its target's REAL: median 0.65).
  Different identities, 19012 pairs: min 0.37, 1st 0.53, 5th 0.58, median 0.72; this counts true
  same-person pairs too (lfw_subset repeats people: identities 8, 34 and 90 look like one man, at
  0.37 and 0.46). The faces are 25 px thumbnails upscaled, so the demo is far noisier than real video;
  choose_threshold gives 0.46 there. Average linkage on the 196 videos: at 0.50, 102 clusters
  (largest 2.0%); at 0.55, 78 clusters, largest 6 videos (3.1%), 96% of FAKEs with their source's
  REAL, and joined with the fake->original links 27 groups, the largest 16% of videos; at 0.60, 46
  clusters (largest 7.1%) but only 9 groups once joined, the largest 80%: no split left.
  Single linkage at 0.55 already puts 88% of the videos in one cluster.
So: on real faces nothing separates 0.55 from 0.60 (no false merge up to 0.62, and video means are
tighter than single photos); on the noisy demo 0.60 leaves no identity-disjoint split and 0.55 does.
0.55 clusters; cross_split_matches audits at dlib's 0.6, so a pair in between is reported, not merged.

Speed (CPU, dlib-bin has neither CUDA nor BLAS): about 12 faces per CPU-second (one 150 px ResNet
pass each; alignment is ~1 ms), so 100k faces take ~2.3 CPU-hours: `workers` processes scale it
(16 cores: ~10 min). Clustering, on synthetic DFDC-sized data (120k videos, 960 people, 7.5M pairs
within 0.55) on this 2-core machine: radius_pairs 170 s, average linkage 110 s, 2.1 GB peak memory.
"""
from __future__ import annotations

import heapq
import importlib.util
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from helpers import runtime
from helpers.faces import LANDMARK_NAMES, read_image

DIM = 128
EMBEDDING_COLUMNS = [f"e{i:03d}" for i in range(DIM)]
DEFAULT_THRESHOLD = 0.55   # clustering; see the module docstring for the measurements behind it
DLIB_THRESHOLD = 0.6       # dlib's documented same-person distance (LFW): the looser audit in cross_split_matches
LINKAGES = ("average", "single")
MIN_CROP_PX = 16
MODEL_FILES = {"shape_predictor": "shape_predictor_5_face_landmarks.dat",
               "recognition": "dlib_face_recognition_resnet_model_v1.dat"}

# dlib's shape predictor was trained on its own detector's square boxes, which are tighter and lower
# than MTCNN's. Fitted on the 30 real photo faces (dlib's HOG box against MTCNN's box and landmarks):
# HOG side = 0.82 x the MTCNN box's longer side (sd 0.075), centred 0.07 box sides below its centre;
# HOG side = 2.37 x the eye-midpoint-to-mouth-midpoint distance (sd 0.24), centred on the mean landmark.
# The descriptors hardly depend on which one is used (MTCNN at full resolution: same-person max
# 0.640-0.646, different-person min 0.625-0.651 over the four choices tried), but landmarks follow a
# turned head.
BOX_SIDE, BOX_SHIFT = 0.82, 0.07
LANDMARK_SIDE = 2.37

_models: tuple | None = None


def model_paths() -> dict[str, Path]:
    """The dlib model files shipped in the face-recognition-models package."""
    # find_spec, not import: the package's __init__ imports pkg_resources, which setuptools >= 81 dropped.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ImportError("face-recognition-models is not installed: pip install face-recognition-models "
                          "(it ships dlib's model files; see pyproject.toml)")
    folder = Path(spec.origin).parent / "models"
    paths = {key: folder / name for key, name in MODEL_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"dlib model files missing: {missing}; reinstall face-recognition-models")
    return paths


def load_models():
    """dlib's 5-point shape predictor and face recognition ResNet, loaded once per process."""
    global _models
    if _models is None:
        import dlib  # noqa: PLC0415 - only this module needs dlib

        paths = model_paths()
        _models = (dlib.shape_predictor(str(paths["shape_predictor"])),
                   dlib.face_recognition_model_v1(str(paths["recognition"])))
    return _models


# --- Descriptors -------------------------------------------------------------------------------------

def landmark_fractions(faces: pd.DataFrame) -> np.ndarray:
    """The five MTCNN landmarks of each faces.csv row as (n, 5, 2) fractions of its crop's side (NaN if absent).

    faces.csv holds landmarks in frame pixels and the crop's square (crop_x0, crop_y0, crop_side);
    fractions do not depend on FACE_SIZE, which embed_faces reads from each crop instead.
    """
    needed = [f"{n}_{a}" for n in LANDMARK_NAMES for a in "xy"] + ["crop_x0", "crop_y0", "crop_side"]
    missing = [c for c in needed if c not in faces]
    if missing:
        raise KeyError(f"faces table lacks {missing}: pass faces.csv as written by notebook 02")
    points = faces[needed[:10]].to_numpy(dtype=np.float64).reshape(-1, 5, 2)
    origin = faces[["crop_x0", "crop_y0"]].to_numpy(dtype=np.float64)[:, None, :]
    side = faces["crop_side"].to_numpy(dtype=np.float64)[:, None, None]
    return (points - origin) / side


def face_rectangle(height: int, width: int, margin: float = 1.3, landmarks: np.ndarray | None = None):
    """The dlib.rectangle its shape predictor expects for the face in a crop made with this margin.

    From the five landmarks (crop pixels) when they are given and finite, else from the crop geometry:
    the face box is the central 1/margin of the crop (helpers.faces.square_crop).
    """
    import dlib  # noqa: PLC0415

    if landmarks is not None and np.isfinite(landmarks).all():
        landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
        eye_mouth = float(np.hypot(*(landmarks[3:].mean(0) - landmarks[:2].mean(0))))
        side = LANDMARK_SIDE * eye_mouth
        cx, cy = landmarks.mean(0)
    else:
        side = 0
    if not side >= 4:  # absent or degenerate landmarks (points on top of each other)
        box = min(height, width) / margin
        side, cx, cy = BOX_SIDE * box, width / 2, height / 2 + BOX_SHIFT * box
    half = side / 2
    return dlib.rectangle(int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half)))


def _embed_chunk(task: tuple) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Descriptors of one chunk of crops: (positions, (k, 128) array with NaN rows, failures)."""
    import dlib  # noqa: PLC0415

    positions, paths, landmarks, margin = task
    predictor, net = load_models()
    out = np.full((len(paths), DIM), np.nan, dtype=np.float32)
    chips, rows, failed = [], [], []
    for k, (position, path) in enumerate(zip(positions, paths)):
        if not isinstance(path, (str, Path)) or not str(path) or not Path(path).is_file():
            # checked first: OpenCV would log a warning for every missing file
            failed.append((int(position), f"{path}: the face crop does not exist (rerun notebook 02 or fix face_path)"))
            continue
        try:
            image = read_image(str(path))
        except ValueError as err:
            failed.append((int(position), f"{err}; rerun notebook 02 to rewrite it"))
            continue
        height, width = image.shape[:2]
        # Such crops all map to one descriptor, and a pile of identical points would be one "person".
        if min(height, width) < MIN_CROP_PX:
            failed.append((int(position), f"{path}: a {width}x{height} crop is too small to identify "
                                          f"(at least {MIN_CROP_PX} px, notebook 02's FACE_SIZE floor)"))
            continue
        if float(image.std()) < 1.0:
            failed.append((int(position), f"{path}: the crop is a single flat colour, no face to identify"))
            continue
        points = None if landmarks is None else landmarks[k] * [width, height]
        try:
            shape = predictor(image, face_rectangle(height, width, margin, points))
            chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        except RuntimeError as err:  # pragma: no cover - dlib raises on inputs we have not met
            failed.append((int(position), f"{path}: dlib could not align the face ({err})"))
            continue
        rows.append(k)
    if chips:
        # One call for the chunk: dlib runs a list of chips through the ResNet as one batch.
        out[rows] = np.asarray(net.compute_face_descriptor(chips), dtype=np.float32)
    return np.asarray(positions), out, failed


def embed_faces(paths: Sequence[str], landmarks: np.ndarray | None = None, progress: bool = True,
                margin: float = 1.3, workers: int = 1, chunk: int = 32
                ) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """dlib descriptors of face crops: (n, 128) float32, raw (not L2-normalised); NaN rows and (position, reason) on failure.

    A crop fails when missing, unreadable, smaller than MIN_CROP_PX or blank.
    landmarks: (n, 5, 2) MTCNN landmarks as fractions of each crop's side (`landmark_fractions`), or
    None to place the face from the crop geometry alone (margin: the MARGIN the crops were cut with).
    workers: processes, each loading the models once (0 = one per core); dlib's CPU ResNet is
    single-threaded, so they scale almost linearly.
    """
    paths = list(paths)
    if landmarks is not None:
        landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
        if len(landmarks) != len(paths):
            raise ValueError(f"landmarks has {len(landmarks)} rows for {len(paths)} paths; pass one (5, 2) row per path")
    if not margin >= 1:
        raise ValueError(f"margin is the crop side over the face box side (MARGIN of notebook 02, >= 1), got {margin}")
    tasks = [(np.arange(s, min(s + chunk, len(paths))), paths[s:s + chunk],
              None if landmarks is None else landmarks[s:s + chunk], float(margin))
             for s in range(0, len(paths), chunk)]
    out = np.full((len(paths), DIM), np.nan, dtype=np.float32)
    failed: list[tuple[int, str]] = []
    workers = min(runtime.worker_count(workers), max(1, len(tasks)))
    with runtime.progress(total=len(paths), desc="embedding faces", unit="face", disable=not progress) as bar:
        if workers == 1:
            results = map(_embed_chunk, tasks)
            pool = None
        else:
            # spawn, as helpers.manifest does: forking a process that runs TensorFlow/torch threads can hang
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            results = pool.map(_embed_chunk, tasks)
        try:
            for positions, block, chunk_failed in results:
                out[positions] = block
                failed += chunk_failed
                bar.update(len(positions))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    return out, sorted(failed)


# --- Videos -------------------------------------------------------------------------------------------

def video_embeddings(faces: pd.DataFrame, embeddings: np.ndarray) -> pd.DataFrame:
    """One row per video_id: n_faces (faces with a descriptor) and their mean descriptor (e000..e127).

    The mean is rescaled to its faces' mean norm: a plain mean shrinks toward the origin when a video's
    faces disagree (a flickering swap, two people taking turns as the largest face), and a shrunken
    point sits close to everyone and would bridge identities. Videos without a descriptor keep NaN.
    part, label and original are carried along when present.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.shape != (len(faces), DIM):
        raise ValueError(f"embeddings has shape {embeddings.shape}; expected ({len(faces)}, {DIM}), one row per faces row")
    if "video_id" not in faces:
        raise KeyError("faces table has no video_id column: pass faces.csv as written by notebook 02")
    codes, videos = pd.factorize(faces["video_id"].astype(str), sort=True)
    ok = np.isfinite(embeddings).all(axis=1)
    n = np.bincount(codes[ok], minlength=len(videos))
    total = np.zeros((len(videos), DIM))
    np.add.at(total, codes[ok], embeddings[ok])
    norm = np.bincount(codes[ok], weights=np.linalg.norm(embeddings[ok], axis=1), minlength=len(videos))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / np.linalg.norm(total, axis=1, keepdims=True) * (norm / n)[:, None]
    mean[n == 0] = np.nan
    table = pd.DataFrame({"video_id": videos})
    carried = [c for c in ("part", "label", "original") if c in faces]
    if carried:
        first = faces.assign(_code=codes).drop_duplicates("_code").set_index("_code")[carried]
        table = table.join(first.reindex(range(len(videos))).reset_index(drop=True))
    table["n_faces"] = n
    return pd.concat([table, pd.DataFrame(mean.astype(np.float32), columns=EMBEDDING_COLUMNS)], axis=1)


def _matrix(video_emb) -> np.ndarray:
    """The (n, 128) float64 embedding matrix of a video_embeddings table or of an array."""
    if isinstance(video_emb, pd.DataFrame):
        missing = [c for c in EMBEDDING_COLUMNS if c not in video_emb]
        if missing:
            raise KeyError(f"the table lacks embedding columns ({missing[:3]}...): pass video_embeddings' output")
        video_emb = video_emb[EMBEDDING_COLUMNS].to_numpy()
    matrix = np.asarray(video_emb, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"expected an (n, d) array of embeddings, got shape {matrix.shape}")
    return matrix


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _blocks(n_rows: int, n_cols: int, max_cells: int):
    """Row ranges whose distance blocks against n_cols columns hold at most max_cells cells."""
    step = max(1, max_cells // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def radius_pairs(x: np.ndarray, radius: float, max_cells: int = 16_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j of rows of x within `radius` (Euclidean): (i, j, squared distance).

    Chunked matrix products: memory is max_cells floats (64 MB) plus the pairs found, never n x n.
    """
    x = np.asarray(x, dtype=np.float64)
    x32 = x.astype(np.float32)
    sq32 = _sq_norms(x32)
    r2 = float(radius) ** 2
    # float32 blocks are 3x faster than float64; the slack keeps every pair float32 rounding could
    # push past the radius, and the exact float64 distance of each kept pair decides.
    slack = 1e-4 * (1.0 + r2 + 2.0 * float(sq32.max(initial=0.0)))
    found_i, found_j, found_d = [], [], []
    for start, stop in _blocks(len(x), len(x), max_cells):
        # only columns j >= start: each pair once, and the block shrinks as start grows
        block = x32[start:stop] @ x32[start:].T
        block *= -2.0
        block += sq32[start:stop, None]
        block += sq32[None, start:]
        rows, cols = np.nonzero(block <= r2 + slack)
        rows, cols = rows + start, cols + start
        keep = cols > rows
        rows, cols = rows[keep], cols[keep]
        diff = x[rows] - x[cols]
        d2 = np.einsum("ij,ij->i", diff, diff)
        close = d2 <= r2
        found_i.append(rows[close])
        found_j.append(cols[close])
        found_d.append(d2[close])
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def _average_linkage(x: np.ndarray, i: np.ndarray, j: np.ndarray, d2: np.ndarray, limit: float) -> np.ndarray:
    """Agglomerate rows of x while two clusters' mean pairwise squared distance is <= limit; a root per row.

    Exact UPGMA on squared Euclidean distances, without the n x n matrix: the mean squared distance
    between clusters A and B is Q_A/n_A + Q_B/n_B - 2 S_A.S_B/(n_A n_B) (S: sum of rows, Q: sum of
    squared norms), and two clusters can only come within the limit if some pair of their rows is,
    so only clusters joined by a radius pair are ever compared.
    """
    n = len(x)
    size = np.zeros(2 * n)
    total = np.zeros((2 * n, x.shape[1]))
    sq = np.zeros(2 * n)
    size[:n], total[:n], sq[:n] = 1.0, x, _sq_norms(x)
    neighbours: list[set | None] = [set() for _ in range(n)]
    for a, b in zip(i.tolist(), j.tolist()):
        neighbours[a].add(b)
        neighbours[b].add(a)
    alive = np.zeros(2 * n, dtype=bool)
    alive[:n] = True
    merged_into = np.full(2 * n, -1, dtype=np.int64)

    def best_entry(a: int):
        """(criterion, a, partner) for a's closest neighbour, or None when none is within the limit."""
        if not neighbours[a]:
            return None
        others = np.fromiter(neighbours[a], dtype=np.int64, count=len(neighbours[a]))
        crit = sq[a] / size[a] + sq[others] / size[others] - 2.0 * (total[others] @ total[a]) / (size[a] * size[others])
        k = int(crit.argmin())
        return (float(crit[k]), a, int(others[k])) if crit[k] <= limit else None

    # One entry per cluster, its closest neighbour. The closest pair overall is then some cluster's
    # entry; an entry whose partner has merged is stale and is recomputed when it surfaces, and a new
    # cluster's entry covers every pair it forms, so no other entry needs updating on a merge.
    heap = [e for e in (best_entry(a) for a in range(n)) if e is not None]
    heapq.heapify(heap)
    next_id = n
    while heap:
        _, a, b = heapq.heappop(heap)
        if not alive[a]:
            continue
        if not alive[b]:
            entry = best_entry(a)
            if entry is not None:
                heapq.heappush(heap, entry)
            continue
        c = next_id
        next_id += 1
        alive[a] = alive[b] = False
        alive[c] = True
        merged_into[a] = merged_into[b] = c
        size[c], total[c], sq[c] = size[a] + size[b], total[a] + total[b], sq[a] + sq[b]
        # neighbours above the limit stay neighbours: a later merge can bring their mean down
        around = (neighbours[a] | neighbours[b]) - {a, b}
        neighbours[a] = neighbours[b] = None
        for k in around:
            neighbours[k].discard(a)
            neighbours[k].discard(b)
            neighbours[k].add(c)
        neighbours.append(around)
        entry = best_entry(c)
        if entry is not None:
            heapq.heappush(heap, entry)
    root = np.arange(next_id)
    for node in range(next_id - 1, -1, -1):  # parents have larger ids, so one backward pass resolves chains
        if merged_into[node] >= 0:
            root[node] = root[merged_into[node]]
    return root[:n]


def cluster_identities(video_emb: pd.DataFrame | np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                       linkage: str = "average") -> np.ndarray:
    """Identity cluster labels (0..k-1, by first appearance) of videos' embeddings at a Euclidean `threshold`.

    "average" (default): UPGMA on squared distances; two clusters merge while the root-mean-square
    distance over all their cross pairs is <= threshold. It does not chain: one look-alike pair (or a
    fake whose face is half target, half source) cannot pull two people together, since every other
    pair counts too. "single": connected components of the pairs within threshold; it catches every
    pair dlib calls the same person, but one bridge merges two people, and bridges pile up (on the demo
    at 0.55 one cluster holds 88% of the videos), so use it only to see what average linkage left apart.
    Scales to DFDC: pairs within threshold come from chunked matrix products (`radius_pairs`) and
    average linkage is run on that sparse graph exactly (`_average_linkage`), so memory grows with the
    number of close pairs, never n x n. A video without an embedding (NaN) is a cluster of its own.
    """
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    if not threshold > 0:
        raise ValueError(f"threshold is a Euclidean distance between dlib descriptors (> 0), got {threshold}")
    x = _matrix(video_emb)
    usable = np.flatnonzero(np.isfinite(x).all(axis=1))
    i, j, d2 = radius_pairs(x[usable], threshold)
    if linkage == "single":
        from scipy.sparse import coo_matrix  # noqa: PLC0415
        from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

        graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(usable), len(usable)))
        root = connected_components(graph, directed=False)[1]
    else:
        root = _average_linkage(x[usable], i, j, d2, float(threshold) ** 2)
    labels = np.full(len(x), -1, dtype=np.int64)
    labels[usable] = root
    alone = labels < 0
    labels[alone] = root.max(initial=-1) + 1 + np.arange(alone.sum())
    return pd.factorize(labels)[0].astype(np.int64)


def cluster_summary(labels: np.ndarray) -> dict:
    """Videos, clusters, the largest cluster's size and share, and singletons."""
    counts = np.bincount(np.asarray(labels)) if len(labels) else np.zeros(0, np.int64)
    return {"videos": int(len(labels)), "clusters": int(len(counts)), "largest": int(counts.max(initial=0)),
            "largest_share": round(float(counts.max(initial=0) / max(1, len(labels))), 4),
            "singletons": int((counts == 1).sum())}


# --- Choosing and auditing the threshold --------------------------------------------------------------

def pair_distances(embeddings: np.ndarray, identity_labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances of all same-identity pairs and all different-identity pairs (rows with NaN left out).

    Dense: for labelled evaluation sets of up to a few thousand rows.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(identity_labels)
    if len(labels) != len(x):
        raise ValueError(f"{len(labels)} identity labels for {len(x)} embeddings; pass one per row")
    ok = np.isfinite(x).all(axis=1)
    x, labels = x[ok], labels[ok]
    from scipy.spatial.distance import pdist  # noqa: PLC0415

    d = pdist(x)  # condensed, in np.triu_indices(n, 1) order
    upper = np.triu_indices(len(x), k=1)
    same = labels[upper[0]] == labels[upper[1]]
    return d[same], d[~same]


def choose_threshold(embeddings: np.ndarray, identity_labels: Sequence, recall: float = 0.99,
                     max_false_merge: float = 0.001,
                     thresholds: Sequence[float] = tuple(np.round(np.arange(0.30, 0.801, 0.01), 2))
                     ) -> tuple[float, pd.DataFrame]:
    """The smallest threshold that keeps `recall` of same-identity pairs, unless that merges more than
    `max_false_merge` of different-identity pairs: then the largest threshold that does not.

    Returns the threshold and a table per candidate: same_recall (same-identity pairs within it),
    false_merge (different-identity pairs within it). Missed merges leak a person across splits;
    false merges only cost split balance, hence recall first.
    """
    same, different = pair_distances(embeddings, identity_labels)
    if not len(same) or not len(different):
        raise ValueError(f"need same- and different-identity pairs, got {len(same)} and {len(different)}")
    grid = np.asarray(thresholds, dtype=np.float64)
    table = pd.DataFrame({"threshold": grid,
                          "same_recall": [(same <= t).mean() for t in grid],
                          "false_merge": [(different <= t).mean() for t in grid]})
    reaching = table[table.same_recall >= recall]
    choice = float(reaching.threshold.iloc[0]) if len(reaching) else float(grid[-1])
    if float(table.loc[table.threshold == choice, "false_merge"].iloc[0]) > max_false_merge:
        allowed = table[table.false_merge <= max_false_merge]
        choice = float(allowed.threshold.iloc[-1]) if len(allowed) else float(grid[0])
    table.attrs.update(same_pairs=int(len(same)), different_pairs=int(len(different)), chosen=choice)
    return choice, table


def cross_split_matches(video_emb: pd.DataFrame, split_of_video: pd.Series,
                        threshold: float = DLIB_THRESHOLD, max_cells: int = 16_000_000) -> pd.DataFrame:
    """For each val/test video, its nearest train video by descriptor distance; same_identity when within threshold.

    video_emb: video_embeddings' table (video_id and e000..e127); split_of_video: train/val/test by
    video_id. The default is dlib's 0.6, looser than the clustering's DEFAULT_THRESHOLD, so the audit
    also shows pairs the clustering left apart. Videos without an embedding get no match (NaN
    distance, same_identity False). Sorted closest first.
    """
    if "video_id" not in video_emb:
        raise KeyError("video_emb lacks video_id: pass video_embeddings' output")
    ids = video_emb["video_id"].astype(str).to_numpy()
    split_of_video = split_of_video.copy()
    split_of_video.index = split_of_video.index.astype(str)
    which = split_of_video.reindex(ids).to_numpy()
    x = _matrix(video_emb)
    ok = np.isfinite(x).all(axis=1)
    train = np.flatnonzero((which == "train") & ok)
    query = np.flatnonzero(np.isin(which, ["val", "test"]))
    nearest = np.full(len(query), -1, dtype=np.int64)
    distance = np.full(len(query), np.nan)
    if len(train):
        sq_train = _sq_norms(x[train])
        for start, stop in _blocks(len(query), len(train), max_cells):
            block = np.nan_to_num(x[query[start:stop]])  # rows without an embedding are blanked below
            d2 = _sq_norms(block)[:, None] + sq_train[None, :] - 2.0 * (block @ x[train].T)
            best = d2.argmin(axis=1)
            nearest[start:stop] = train[best]
            distance[start:stop] = np.sqrt(np.maximum(d2[np.arange(len(block)), best], 0.0))
        missing = ~ok[query]
        nearest[missing], distance[missing] = -1, np.nan
    table = pd.DataFrame({"video_id": ids[query], "split": which[query],
                          "nearest_train": np.where(nearest >= 0, ids[np.maximum(nearest, 0)], None),
                          "distance": distance})
    table["same_identity"] = table.distance <= threshold
    return table.sort_values(["distance", "video_id"], na_position="last").reset_index(drop=True)
