"""MTCNN in PyTorch: the `mtcnn` package's (1.x) P-, R- and O-net, weights and pipeline, without TensorFlow.

The package keeps its weights as joblib/lz4 pickles of the Keras layers' numpy arrays
(`mtcnn/assets/weights/{pnet,rnet,onet}.lz4`), so they load with joblib alone. Every step follows
mtcnn 1.0 so that the faces, boxes and landmarks are the package's (see tests/test_mtcnn_torch.py):

- the image is normalised to (x - 127.5) / 128 and each pyramid level is an area resize of it to
  trunc(side * scale) px (tf.image.resize AREA), with mtcnn's scales (`pyramid_scales`);
- PNet's proposals (face probability > threshold) are regressed before NMS, NMS runs per level and
  then across levels, and R-/O-net crops are TF's crop_and_resize (bilinear, boxes normalised by the
  image size but sampled on (size - 1), samples outside the image are 0), not rounded boxes;
- mtcnn's NMS is not the greedy one: a box goes when any higher-scored box overlaps it by more than
  the threshold, kept or not (`nms_mask`); ONet's NMS divides by the smaller area;
- Keras is NHWC: conv kernels are (kh, kw, in, out), and R-/O-net flatten their last feature map
  after a Permute((2, 1, 3)), i.e. in (width, height, channel) order.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from pathlib import Path

# Before torch loads OpenMP (no effect once it has): idle OpenMP threads otherwise spin, and on busy
# cores that made this detector 2-3x slower in CPU time (bench/face_extraction.py; helpers.predict too).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from helpers.faces import Face, map_back, mtcnn_min_face, shrink_by_shape  # noqa: E402

THRESHOLDS = (0.6, 0.7, 0.8)  # mtcnn's PNet, RNet and ONet defaults
NMS_PNET_LEVEL, NMS_PNET, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
MIN_SIZE = 12  # PNet's window
MAX_PATCHES = 4096  # R-/O-net patches per forward pass: bounds memory on long batches
NMS_MATRIX_ROWS = 2048  # up to this many boxes, NMS runs on one all-pairs matrix instead of image by image
# Pixels per PNet pass. On the CPU PNet's feature maps should stay in cache: one or two 640 x 360
# frames per pass ran 2x faster per frame than eight (see bench/README.md); a GPU wants big passes.
PNET_PIXELS = {"cpu": 2 ** 19, "cuda": 2 ** 26}


def weights_dir() -> Path:
    """The folder of the weights the `mtcnn` wheel ships (found without importing mtcnn, which imports TensorFlow)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the `mtcnn` package is not installed: its wheel ships the MTCNN weights "
                                "(run `make setup`, or `pip install mtcnn lz4 joblib`)")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights"


def load_keras_weights(path: Path) -> list[np.ndarray]:
    """The numpy arrays of one mtcnn weights file, in Keras' get_weights() order."""
    import joblib  # noqa: PLC0415 - only needed here

    if not path.is_file():
        raise FileNotFoundError(f"{path}: MTCNN weights file missing; reinstall the `mtcnn` package (>= 1.0)")
    weights = joblib.load(path)
    if not isinstance(weights, list) or not all(isinstance(w, np.ndarray) for w in weights):
        raise ValueError(f"{path}: expected a list of numpy arrays (mtcnn 1.x format), got {type(weights).__name__}")
    return weights


def _copy_keras(module: nn.Module, weights: list[np.ndarray], path: Path) -> None:
    """Copy Keras arrays into `module`'s parameters, which are declared in the Keras layers' order."""
    params = list(module.parameters())
    if len(params) != len(weights):
        raise ValueError(f"{path}: {len(weights)} arrays for {len(params)} parameters of {type(module).__name__}")
    with torch.no_grad():
        for param, array in zip(params, weights):
            array = np.asarray(array, dtype=np.float32)
            if array.ndim == 4:  # conv kernel (kh, kw, in, out) -> (out, in, kh, kw)
                array = array.transpose(3, 2, 0, 1)
            elif array.ndim == 2:  # dense kernel (in, out) -> (out, in)
                array = array.T
            else:  # bias, or PReLU alpha ((1, 1, C) shared over height and width, or (C,))
                array = array.reshape(-1)
            if tuple(array.shape) != tuple(param.shape):
                raise ValueError(f"{path}: array of shape {array.shape} for a parameter of shape {tuple(param.shape)}")
            param.copy_(torch.from_numpy(np.ascontiguousarray(array)))


def _flatten_keras(x: torch.Tensor) -> torch.Tensor:
    """NCHW -> Keras' Permute((2, 1, 3)) + Flatten of the NHWC map: (width, height, channel) order."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal network: any image size in, box regression (N, 4, h, w) and face probability (N, h, w) out."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)  # Keras "same" here only pads after: ceil mode
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 4, 1), nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x), torch.softmax(self.conv4_2(x), dim=1)[:, 1]


class RNet(nn.Module):
    """Refinement network: 24 x 24 patches in, box regression (N, 4) and face probability (N,) out."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.fc4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.fc5_1, self.fc5_2 = nn.Linear(128, 4), nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.fc4(_flatten_keras(self.prelu3(self.conv3(x)))))
        return self.fc5_1(x), torch.softmax(self.fc5_2(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output network: 48 x 48 patches in, box regression (N, 4), landmarks (N, 10: 5 x then 5 y), probability (N,)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.fc5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.fc6_1, self.fc6_2, self.fc6_3 = nn.Linear(256, 4), nn.Linear(256, 10), nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.fc5(_flatten_keras(self.prelu4(self.conv4(x)))))
        return self.fc6_1(x), self.fc6_2(x), torch.softmax(self.fc6_3(x), dim=1)[:, 1]


def load_networks(folder: str | Path | None = None) -> tuple[PNet, RNet, ONet]:
    """P-, R- and O-net with the weights of `folder` (default: the ones the mtcnn wheel ships), in eval mode."""
    folder = Path(folder) if folder is not None else weights_dir()
    nets = (PNet(), RNet(), ONet())
    for net, name in zip(nets, ("pnet", "rnet", "onet")):
        path = folder / f"{name}.lz4"
        _copy_keras(net, load_keras_weights(path), path)
        net.eval().requires_grad_(False)
    return nets


# --- The pipeline's geometry, as mtcnn 1.0 computes it ------------------------------------------------

def pyramid_scales(height: int, width: int, min_face_size: float, scale_factor: float,
                   min_size: int = MIN_SIZE) -> np.ndarray:
    """mtcnn's build_scale_pyramid: the level count ignores min_face_size (see faces.mtcnn_min_face)."""
    count = round(-((np.log(min(width, height) / min_size) / np.log(scale_factor)) + 1))
    return (min_size / min_face_size) * scale_factor ** np.arange(count)


def level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """A pyramid level's (height, width): tf.image.resize truncates the float size to int."""
    h, w = (np.asarray([height, width]) * scale).astype(np.int64)
    return int(h), int(w)


@functools.lru_cache(maxsize=64)
def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of TF's ResizeArea along one axis: each output cell averages the input it covers."""
    scale = n_in / n_out
    edges = np.arange(n_out + 1) * scale
    starts, ends = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(cells + 1, ends) - np.maximum(cells, starts), 0, None)
    weights = overlap / scale
    weights.flags.writeable = False  # shared by the cache
    return weights


def resize_area(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area resize of an NCHW float batch as two matrix products (for GPUs; cv2's INTER_AREA is the CPU path)."""
    height, width = batch.shape[-2:]
    ry = torch.tensor(area_matrix(height, size[0]), dtype=batch.dtype, device=batch.device)
    rx = torch.tensor(area_matrix(width, size[1]), dtype=batch.dtype, device=batch.device)
    return torch.matmul(torch.matmul(ry, batch), rx.T)


def pairwise_overlap(boxes: torch.Tensor, method: str = "union") -> torch.Tensor:
    """mtcnn's iou(): intersection over union ("union") or over the smaller area ("min"); areas unclamped."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    w = (torch.minimum(x2[:, None], x2[None]) - torch.maximum(x1[:, None], x1[None])).clamp_(min=0)
    h = (torch.minimum(y2[:, None], y2[None]) - torch.maximum(y1[:, None], y1[None])).clamp_(min=0)
    inter = w * h
    if method == "union":
        return inter / (area[:, None] + area[None] - inter)
    return inter / torch.minimum(area[:, None], area[None])


def nms_mask(boxes: torch.Tensor, threshold: float, method: str = "union") -> torch.Tensor:
    """mtcnn's nms() on boxes sorted by falling score: keep a box unless any earlier one overlaps it > threshold."""
    if len(boxes) < 2:
        return torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    over = pairwise_overlap(boxes, method) > threshold
    return ~torch.triu(over, diagonal=1).any(dim=0)


def by_falling_score(rows: torch.Tensor) -> torch.Tensor:
    """Rows sorted as mtcnn's sort_by_scores does: numpy's argsort of the float64 scores, reversed.

    Saturated scores tie (many PNet proposals score exactly 1.0), and which of the tied boxes NMS keeps
    depends on their order; numpy's sort only compares, so equal comparisons give mtcnn's order.
    """
    order = np.argsort(rows[:, 5].double().cpu().numpy())[::-1].copy()
    return rows[torch.from_numpy(order).to(rows.device)]


def nms_by_image(rows: torch.Tensor, threshold: float, method: str = "union", sort: bool = True) -> torch.Tensor:
    """smart_nms_from_bboxes: rows (image, x1, y1, x2, y2, score, ...) sorted by score, NMS per image, by image."""
    if sort:
        rows = by_falling_score(rows)
    if len(rows) <= NMS_MATRIX_ROWS:  # every image at once: boxes of different images never suppress each other
        over = pairwise_overlap(rows[:, 1:5], method) > threshold
        over &= rows[:, None, 0] == rows[None, :, 0]
        kept = rows[~torch.triu(over, diagonal=1).any(dim=0)]
        return kept[torch.argsort(kept[:, 0], stable=True)]
    images = rows[:, 0]
    kept = []
    for image in torch.unique(images).tolist():
        group = rows[images == image]
        kept.append(group[nms_mask(group[:, 1:5], threshold, method)])
    return torch.cat(kept) if kept else rows[:0]


def to_square(rows: torch.Tensor) -> torch.Tensor:
    """resize_to_square: each box grows to its longer side about its centre."""
    rows = rows.clone()
    w, h = rows[:, 3] - rows[:, 1], rows[:, 4] - rows[:, 2]
    side = torch.maximum(w, h)
    rows[:, 1] += w * 0.5 - side * 0.5
    rows[:, 2] += h * 0.5 - side * 0.5
    rows[:, 3] = rows[:, 1] + side
    rows[:, 4] = rows[:, 2] + side
    return rows


def regress(rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """adjust_bboxes: shift the corners by offsets x (w + 1, h + 1) of the box."""
    rows = rows.clone()
    w = rows[:, 3] - rows[:, 1] + 1
    h = rows[:, 4] - rows[:, 2] + 1
    rows[:, 1:5] += offsets * torch.stack([w, h, w, h], dim=1)
    return rows


def crop_and_resize(images: torch.Tensor, rows: torch.Tensor, size: int) -> torch.Tensor:
    """tf.image.crop_and_resize of each row's box from NHWC `images` to `size` x `size`, as NCHW patches.

    Boxes are normalised by the image's height and width, sampled on (side - 1) like TF, bilinear,
    and samples outside the image are 0 (a grey 127.5 before normalisation).
    """
    height, width = images.shape[1:3]
    steps = torch.arange(size, device=images.device, dtype=images.dtype)

    def axis(lo: torch.Tensor, hi: torch.Tensor, n: int):
        lo, hi = lo / n, hi / n
        coords = lo[:, None] * (n - 1) + steps[None] * ((hi - lo) * (n - 1) / (size - 1))[:, None]
        inside = (coords >= 0) & (coords <= n - 1)
        first = coords.floor()
        frac = coords - first
        first = first.clamp(0, n - 1).long()
        second = coords.ceil().clamp(0, n - 1).long()
        return first, second, frac, inside

    boxes = rows[:, 1:5].to(images.dtype)
    top, bottom, fy, in_y = axis(boxes[:, 1], boxes[:, 3], height)
    left, right, fx, in_x = axis(boxes[:, 0], boxes[:, 2], width)
    # Four gathers from the flattened batch: pixel (b, y, x) is row (b * height + y) * width + x.
    pixels = images.reshape(-1, images.shape[-1])
    base = rows[:, 0].long()[:, None] * height
    upper, lower = ((base + top) * width)[:, :, None], ((base + bottom) * width)[:, :, None]
    lft, rgt = left[:, None, :], right[:, None, :]

    def gather(index: torch.Tensor) -> torch.Tensor:
        return pixels.index_select(0, index.reshape(-1)).reshape(*index.shape, -1)

    fx_ = fx[:, None, :, None]
    top_left = gather(upper + lft)
    top_row = top_left + (gather(upper + rgt) - top_left) * fx_
    bottom_left = gather(lower + lft)
    bottom_row = bottom_left + (gather(lower + rgt) - bottom_left) * fx_
    patches = top_row + (bottom_row - top_row) * fy[:, :, None, None]
    patches = patches * (in_y[:, :, None] & in_x[:, None, :])[..., None]
    return patches.permute(0, 3, 1, 2)  # NHWC memory, i.e. channels_last


@contextlib.contextmanager
def full_float32(device: torch.device):
    """On CUDA, IEEE float32 convolutions and matrix products while detecting, as on the CPU and in TensorFlow.

    cuDNN convolutions default to TF32 (10-bit mantissa), which moves PNet's scores by ~1e-3 and so
    which borderline proposals pass; the settings are process-wide, so they are put back afterwards.
    """
    saved = []
    try:
        if device.type == "cuda":
            for backend in (torch.backends.cudnn.conv, torch.backends.cuda.matmul):
                if hasattr(backend, "fp32_precision"):
                    saved.append((backend, backend.fp32_precision))
                    backend.fp32_precision = "ieee"
        yield
    finally:
        for backend, value in reversed(saved):
            backend.fp32_precision = value


class TorchMTCNNDetector:
    """mtcnn 1.0's MTCNN in torch, batched, on the CPU or a GPU: a drop-in for helpers.faces.FaceDetector.

    detect_max_side, min_face_size, scale_factor: as FaceDetector (a copy whose longer side is at most
    detect_max_side is searched; boxes come back in the input's pixels). thresholds: PNet, RNet and
    ONet face-probability floors (mtcnn's defaults). threads: torch CPU threads (None = leave torch's
    setting; process-wide). device: "cpu", "cuda", ... (None = cuda when available). weights: a folder
    with pnet/rnet/onet.lz4 (None = the mtcnn wheel's).
    """

    name = "mtcnn-torch"

    def __init__(self, detect_max_side: int = 640, min_face_size: int = 20, threads: int | None = None,
                 device: str | torch.device | None = None, scale_factor: float = 0.709,
                 thresholds: tuple[float, float, float] = THRESHOLDS, weights: str | Path | None = None):
        if not 0 < scale_factor < 1:
            raise ValueError(f"scale_factor must be between 0 and 1 (mtcnn's default 0.709), got {scale_factor}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds takes PNet, RNet and ONet's, got {thresholds!r}")
        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # channels_last: oneDNN runs these thin convolutions 2-3x faster in NHWC, which is also how
        # the pyramid levels and the crops come (no copy).
        self.pnet, self.rnet, self.onet = (net.to(self.device, memory_format=torch.channels_last)
                                           for net in load_networks(weights))
        self.detect_max_side = int(detect_max_side)
        self.min_face_size = int(min_face_size)
        self.scale_factor = float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        # Pyramid levels by matrix products on the device; on the CPU cv2's INTER_AREA is faster.
        self.resize_on_device = self.device.type != "cpu"

    def detect(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces in each RGB uint8 image, most confident first; images of equal size go in one batch."""
        results: list[list[Face]] = [[] for _ in images]
        small, scales, by_shape = shrink_by_shape(images, self.detect_max_side)
        with torch.inference_mode(), full_float32(self.device):
            for indices in by_shape.values():
                batch = [small[i] for i in indices]
                # As FaceDetector: min_face_size in pixels of the copy, capped where mtcnn 1.0 could run it.
                min_size = mtcnn_min_face(min(batch[0].shape[:2]), self.min_face_size * min(scales[i] for i in indices),
                                          self.scale_factor)
                for k, faces in enumerate(self.detect_batch(batch, min_size)):
                    results[indices[k]] = faces
        return [sorted(map_back(faces, scale), key=lambda f: -f.confidence) for faces, scale in zip(results, scales)]

    def detect_one(self, image: np.ndarray) -> list[Face]:
        return self.detect([image])[0]

    def search(self, images: list[np.ndarray], min_face_size: float) -> list[list[Face]]:
        """Faces in small RGB uint8 crops (equal sizes batched), from `min_face_size` px of the crop up.

        For a search near a face already found (helpers.predict between key frames): no downscaling, and
        not mtcnn 1.0's cap on min_face_size (faces.mtcnn_min_face), which on a 160 px crop searches down to
        20 px faces; here the pyramid stops where its levels fall below PNet's 12 px, so a search for faces
        of 40+ px on a 160 px crop runs a quarter of the PNet pixels.
        """
        results: list[list[Face]] = [[] for _ in images]
        by_shape: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"search() takes RGB uint8 HxWx3 images (see faces.to_rgb), got {image.dtype} {image.shape}")
            by_shape.setdefault(image.shape, []).append(i)
        with torch.inference_mode(), full_float32(self.device):
            for indices in by_shape.values():
                for k, faces in enumerate(self.detect_batch([images[i] for i in indices], max(MIN_SIZE, min_face_size))):
                    results[indices[k]] = sorted(faces, key=lambda f: -f.confidence)
        return results

    # --- the three stages on one batch of equal-size images -----------------------------------------

    def detect_batch(self, batch: list[np.ndarray], min_face_size: float) -> list[list[Face]]:
        """mtcnn's detect_faces on equal-size RGB images (no downscaling), min_face_size in their pixels."""
        height, width = batch[0].shape[:2]
        stacked = np.stack(batch)
        if self.resize_on_device:  # uint8 travels, 4x fewer bytes; (x - 127.5) / 128 is exact in float32
            images = torch.from_numpy(stacked).to(self.device).float().sub_(127.5).div_(128)
            normalised = None
        else:
            images = torch.from_numpy((stacked.astype(np.float32) - 127.5) / 128)
            normalised = list(images.numpy())  # views, for cv2
        rows = self.stage_pnet(normalised, images, min_face_size)  # images: NHWC, also for the crops
        if len(rows):
            rows = self.stage_rnet(images, rows)
        if len(rows):
            rows = self.stage_onet(images, rows)
        faces: list[list[Face]] = [[] for _ in batch]
        if not len(rows):
            return faces
        rows = rows.double().cpu().numpy()
        # fit_to_image: corners clipped to the image, landmarks left as they are
        rows[:, [1, 3]] = rows[:, [1, 3]].clip(0, width - 1)
        rows[:, [2, 4]] = rows[:, [2, 4]].clip(0, height - 1)
        for row in rows:
            x1, y1, x2, y2 = row[1:5]
            faces[int(row[0])].append(Face(box=np.array([x1, y1, x2 - x1, y2 - y1]), confidence=float(row[5]),
                                           landmarks=np.stack([row[6:11], row[11:16]], axis=1)))
        return faces

    def pyramid(self, normalised: list[np.ndarray] | None, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """One pyramid level of the whole batch as NCHW: cv2's INTER_AREA on the CPU, matrix products on a GPU."""
        if not self.resize_on_device:
            levels = [cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA) for image in normalised]
            return torch.from_numpy(np.stack(levels)).permute(0, 3, 1, 2)  # NHWC memory: channels_last
        return resize_area(images.permute(0, 3, 1, 2), size).contiguous(memory_format=torch.channels_last)

    def stage_pnet(self, normalised: list[np.ndarray] | None, images: torch.Tensor, min_face_size: float) -> torch.Tensor:
        """Proposals (image, x1, y1, x2, y2, score) from every pyramid level, NMS'd, squared."""
        height, width = images.shape[1:3]
        found = []
        for scale in pyramid_scales(height, width, min_face_size, self.scale_factor):
            size = level_size(height, width, scale)
            if min(size) < MIN_SIZE:  # mtcnn would fail here; mtcnn_min_face keeps the pyramid above it
                break
            step = max(1, PNET_PIXELS.get(self.device.type, PNET_PIXELS["cpu"]) // (size[0] * size[1]))
            outputs = [self.pnet(self.pyramid(normalised and normalised[i:i + step], images[i:i + step], size))
                       for i in range(0, len(images), step)]
            reg, prob = (torch.cat(parts) for parts in zip(*outputs))
            b, y, x = torch.nonzero(prob > self.thresholds[0], as_tuple=True)
            if not len(b):
                continue
            offsets = reg[b, :, y, x] * 11  # the 12 px cell spans 11 px between its corners
            x0, y0 = (2 * x + 1).to(offsets.dtype), (2 * y + 1).to(offsets.dtype)
            rows = torch.stack([b.to(offsets.dtype), (x0 + offsets[:, 0]) / scale, (y0 + offsets[:, 1]) / scale,
                                (x0 + 11 + offsets[:, 2]) / scale, (y0 + 11 + offsets[:, 3]) / scale,
                                prob[b, y, x]], dim=1)
            found.append(nms_by_image(rows, NMS_PNET_LEVEL))
        if not found:
            return torch.empty((0, 6), device=self.device)
        return to_square(nms_by_image(torch.cat(found), NMS_PNET))

    def _patches(self, net: nn.Module, images: torch.Tensor, rows: torch.Tensor, size: int) -> list[torch.Tensor]:
        """`net` on the crops of `rows`, in chunks of MAX_PATCHES; its outputs concatenated."""
        outputs = [net(crop_and_resize(images, rows[i:i + MAX_PATCHES], size)) for i in range(0, len(rows), MAX_PATCHES)]
        return [torch.cat(parts) for parts in zip(*outputs)]

    def stage_rnet(self, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """RNet's score replaces PNet's, its regression moves the box; NMS, squared."""
        offsets, prob = self._patches(self.rnet, images, rows, 24)
        rows = regress(torch.cat([rows[:, :5], prob[:, None]], dim=1), offsets)
        rows = rows[rows[:, 5] > self.thresholds[1]]
        return to_square(nms_by_image(rows, NMS_RNET)) if len(rows) else rows

    def stage_onet(self, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """ONet's score, regression and landmarks (placed in the box it saw); NMS over the smaller area."""
        offsets, marks, prob = self._patches(self.onet, images, rows, 48)
        w = (rows[:, 3] - rows[:, 1] + 1)[:, None]
        h = (rows[:, 4] - rows[:, 2] + 1)[:, None]
        marks = torch.cat([w * marks[:, :5] + rows[:, 1:2] - 1, h * marks[:, 5:] + rows[:, 2:3] - 1], dim=1)
        rows = regress(torch.cat([rows[:, :5], prob[:, None]], dim=1), offsets)
        rows = torch.cat([rows, marks], dim=1)
        rows = rows[rows[:, 5] > self.thresholds[2]]
        return nms_by_image(rows, NMS_ONET, method="min") if len(rows) else rows
