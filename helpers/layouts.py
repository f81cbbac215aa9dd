"""Dataset layouts: where the videos of FaceForensics++, Celeb-DF and plain real/fake folders lie, and what they are.

`helpers.frames.list_videos(root, layout, compression)` reads a dataset root in one of LAYOUTS and gives
one row per item (a video, or an image in the `folders` layout) with the columns of DFDC's listing
(video_id, part, video_path, label, original, status, reason, key) plus `dataset`, `method` ("real" for
a REAL item) and, where the layout knows them, `identity` and `source_identity` (the names
helpers.splits.IDENTITY_COLUMNS reads; one namespace: an identity as a source is the same person as a
target) and `split` (the dataset's official split). The DFDC layout itself lives in helpers.frames.

- `dfdc`: parts with videos and a metadata.json (helpers.frames). No methods, no identities.
- `ffpp`: FaceForensics++ as its download script writes it:
      original_sequences/{youtube,actors}/<compression>/videos/<id>.mp4          REAL
      manipulated_sequences/<method>/<compression>/videos/<target>_<source>.mp4  FAKE
  `original` is the target's video; DeepFakeDetection's `24_23__scene__CODE.mp4` is a fake of actor 24's
  `24__scene.mp4` with actor 23's face. Identities are "youtube:<id>" and "actors:<id>" (prefixed, so
  YouTube video 024 and actor 24 stay two people, and a CSV reader cannot turn "000" into 0). Video ids
  are unique over the tree: originals keep their name, a fake is "<method>_<name>" (Deepfakes_000_003),
  because every method has a 000_003. The official splits `splits/{train,val,test}.json` (lists of
  [target, source] pairs, from the FaceForensics++ repository) give `split` when present: an original's
  split is that of its pair, a fake's that of its [target, source] pair; DeepFakeDetection and the actors
  are in no split file (empty). Any folder under manipulated_sequences is a method (FFPP_METHODS are the
  published ones); a method without the asked compression is left out, with a notice saying so.
- `celebdf`: Celeb-DF (v2): Celeb-real/ and YouTube-real/ (REAL), Celeb-synthesis/ (FAKE,
  `id<A>_id<B>_<NNNN>.mp4`, a fake of `id<A>_<NNNN>.mp4` with id<B>'s face), and List_of_testing_videos.txt
  (`<label> <folder>/<name>`, 1 = real, 0 = fake): a listed video's `split` is "test", every other
  "train". A listed video that is absent is "missing"; one whose listed label contradicts its folder is
  "bad_label". YouTube-real's people are unknown: no identity.
- `folders`: any tree with `real/` and `fake/` folders (any depth, any case), holding videos or images
  (an image is a one-frame item). The label is the nearest real/fake folder above the item; `method` is
  the folder right below fake/ (fake/Deepfakes/x.mp4 -> Deepfakes), else "fake"; `split` comes from an
  enclosing train/val/valid/validation/test folder when there is one. Video ids are the path below the
  root without extension, "/" written "__" (real__001), so real/001.mp4 and fake/001.mp4 stay apart.

`detect_layout` (LAYOUT "auto") says which layout a root is, and why; a root that matches two is refused
(LayoutError naming both), and one that matches none, holding no videos either, gets an error naming
what each layout expects. Stray items are rows, never dropped: in a layout's video folders a non-video
(.txt, .json), an image or a sub-folder is "unsupported", a folder named like a video "unreadable"; in
the folders layout a video or image outside any real/ or fake/ folder is "unlabelled". A video that
cannot be decoded becomes "unreadable" when its frames are sampled.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from helpers.frames import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, _listdir, find_parts, nfc
from helpers.manifest import notice

LAYOUTS = ("auto", "dfdc", "ffpp", "celebdf", "folders")
COMPRESSIONS = ("c23", "raw", "c40")
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
FFPP_ORIGINALS = ("youtube", "actors")
FFPP_SPLITS = ("train", "val", "test")
CELEBDF_FOLDERS = {"Celeb-real": "REAL", "YouTube-real": "REAL", "Celeb-synthesis": "FAKE"}
CELEBDF_TEST_LIST = "List_of_testing_videos.txt"
LABEL_FOLDERS = {"real": "REAL", "fake": "FAKE"}
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
REAL_METHOD = "real"
FAKE_METHOD = "fake"  # the method of a fake whose layout names none (DFDC, a flat fake/ folder)
# The columns a layout adds to DFDC's listing; identity columns and split only where the layout has them.
EXTRA_COLUMNS = ("dataset", "method", "identity", "source_identity", "split")
BASE_COLUMNS = ("video_id", "part", "video_path", "label", "original", "status", "reason", "key")
EXPECTED = {
    "dfdc": "parts with videos and a metadata.json (dfdc_train_part_0/metadata.json, as Kaggle's DFDC unzips)",
    "ffpp": "original_sequences/ and manipulated_sequences/ (FaceForensics++ as its download script writes it)",
    "celebdf": "Celeb-real/, YouTube-real/ and Celeb-synthesis/ (Celeb-DF v2)",
    "folders": "real/ and fake/ folders, at any depth and in any case, holding videos or images",
}
FFPP_PAIR = re.compile(r"^([^_]+)_([^_]+)$")                   # 000_003
FFPP_ACTORS = re.compile(r"^(\d+)_(\d+)__(.+)__([^_]+)$")      # 24_23__talking_angry_couch__CODE
CELEB_FAKE = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")            # id0_id1_0000
CELEB_REAL = re.compile(r"^(id\d+)_(\d+)$")                    # id0_0000


class LayoutError(ValueError):
    """A dataset root that matches no layout, or more than one: the message names what was expected."""


def expected_text(layouts=("dfdc", "ffpp", "celebdf", "folders")) -> str:
    """What each layout expects to find, for error messages."""
    return "; ".join(f"{name}: {EXPECTED[name]}" for name in layouts)


def check_layout(layout) -> str:
    """A LAYOUT from LAYOUTS; ValueError listing them for anything else."""
    if layout not in LAYOUTS:
        raise ValueError(f"LAYOUT must be one of {', '.join(repr(x) for x in LAYOUTS)}, got {layout!r}")
    return layout


def check_compression(compression) -> str:
    """A FaceForensics++ COMPRESSION from COMPRESSIONS; ValueError listing them for anything else."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"COMPRESSION must be one of {', '.join(repr(c) for c in COMPRESSIONS)} (FaceForensics++'s "
                         f"folder names), got {compression!r}")
    return compression


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of `folder` called `name` in any case, or None."""
    exact = folder / name
    if exact.is_dir():
        return exact
    for entry in _listdir(folder) if folder.is_dir() else []:
        if entry.name.lower() == name.lower() and entry.is_dir():
            return entry
    return None


def _walk_dirs(root: Path):
    """(folder, its sub-folder names) below `root`, following symlinks once per real folder, hidden ones skipped."""
    seen = set()
    for top, dirs, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a symlink loop, or a folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(top), dirs


def _label_folder(root: Path) -> Path | None:
    """The first real/ or fake/ folder (any case) below `root`, or None."""
    for top, dirs in _walk_dirs(root):
        for name in dirs:
            if name.lower() in LABEL_FOLDERS:
                return top / name
    return None


def layout_signals(root: str | Path) -> dict[str, str]:
    """Each layout whose marks `root` carries, with what was found (empty when none)."""
    root = Path(root)
    found = {}
    ffpp = [n for n in ("original_sequences", "manipulated_sequences") if (root / n).is_dir()]
    if ffpp:
        found["ffpp"] = " and ".join(f"{n}/" for n in ffpp)
    celeb = [n for n in CELEBDF_FOLDERS if _child(root, n) is not None]
    if celeb:
        found["celebdf"] = ", ".join(f"{n}/" for n in celeb)
    meta = [p for p in [root, *(d for d in _listdir(root) if d.is_dir())] if (p / "metadata.json").exists()]
    if meta:
        where = ", ".join(str((p / "metadata.json").relative_to(root)) for p in meta[:3])
        found["dfdc"] = f"{len(meta)} metadata.json ({where}{', ...' if len(meta) > 3 else ''})"
    label = _label_folder(root)
    if label is not None:
        found["folders"] = f"{label.relative_to(root)}/"
    return found


def detect_layout(root: str | Path) -> tuple[str, str]:
    """(layout, why) for a dataset root: the one layout whose marks it carries.

    Two layouts' marks: LayoutError naming both. None, but videos in the root or its sub-folders: "dfdc"
    (the videos are listed, each unlabelled for want of a metadata.json, as before layouts existed).
    Neither: LayoutError naming what every layout expects.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VIDEOS_DIR {root} does not exist or is not a folder; point it at a dataset root "
                                f"({expected_text()})")
    found = layout_signals(root)
    if len(found) == 1:
        (name, why), = found.items()
        return name, f"found {why}"
    if len(found) > 1:
        marks = "; ".join(f"{name} ({why})" for name, why in found.items())
        raise LayoutError(f"{root} is ambiguous: it carries the marks of {len(found)} layouts: {marks}. Set LAYOUT to "
                          f"one of {', '.join(repr(n) for n in found)}, or point VIDEOS_DIR at one dataset's root")
    if find_parts(root):
        return "dfdc", "no layout's marks, but videos in the folder or its sub-folders (no metadata.json: unlabelled)"
    raise LayoutError(f"VIDEOS_DIR {root} holds no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) and no metadata.json, "
                      f"neither directly nor in its sub-folders, and none of the layouts' marks. Expected one of: "
                      f"{expected_text()}")


# --- rows ------------------------------------------------------------------------------------------------

def _record(path: Path, part: str, label: str | None, dataset: str, method: str | None, video_id: str,
            original: str | None = None, identity: str | None = None, source: str | None = None,
            status: str = "ok", reason: str = "", split: str | None = None) -> dict:
    return {"video_id": video_id, "part": part, "video_path": str(path), "label": label, "original": original,
            "status": status, "reason": reason, "key": f"{part}/{nfc(path.name)}", "dataset": dataset,
            "method": method, "identity": identity, "source_identity": source, "split": split}


def _stray(entry: Path, where: str) -> tuple[str, str] | None:
    """(status, reason) for an entry of a video folder that is not a video, or None for a video file."""
    suffix = entry.suffix.lower()
    if entry.is_dir():
        if suffix in VIDEO_EXTENSIONS:
            return "unreadable", f"{entry} is a folder, not a video file"
        return "unsupported", f"{entry} is a folder inside {where}, which holds video files only"
    if suffix in VIDEO_EXTENSIONS:
        return None
    if suffix in IMAGE_EXTENSIONS:
        return "unsupported", f"{entry} is an image in {where}, which holds videos: this layout reads videos there"
    return "unsupported", (f"{entry} is not a video ({suffix or 'no extension'}; videos are "
                           f"{', '.join(sorted(VIDEO_EXTENSIONS))})")


def _entries(folder: Path) -> list[Path]:
    return [p for p in _listdir(folder) if not p.name.startswith(".")]


def _table(records: list[dict], keep: tuple[str, ...]) -> pd.DataFrame:
    """The listing as a DataFrame: BASE_COLUMNS, dataset, method, then the optional columns in `keep`."""
    columns = [*BASE_COLUMNS, "dataset", "method", *keep]
    table = pd.DataFrame(records, columns=[*BASE_COLUMNS, *EXTRA_COLUMNS])
    return table[columns].sort_values(["part", "video_id"], kind="mergesort").reset_index(drop=True)


# --- FaceForensics++ ----------------------------------------------------------------------------------------

def read_ffpp_splits(root: Path) -> tuple[dict[frozenset, str], dict[str, str], bool]:
    """The official splits under root/splits: (split of each {target, source} pair, split of each id, any found)."""
    pairs, ids, any_found = {}, {}, False
    for name in FFPP_SPLITS:
        path = root / "splits" / f"{name}.json"
        if not path.is_file():
            continue
        try:
            listed = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(listed, list) or not all(isinstance(p, list) and len(p) == 2 for p in listed):
                raise ValueError("it should be a list of [target, source] pairs")
        except (OSError, UnicodeDecodeError, ValueError) as err:
            notice(f"{path} cannot be used ({err}): its videos get no official split")
            continue
        any_found = True
        for target, source in listed:
            pairs.setdefault(frozenset((str(target), str(source))), name)
            ids.setdefault(str(target), name)
            ids.setdefault(str(source), name)
    return pairs, ids, any_found


def _ffpp_folders(root: Path, compression: str) -> list[tuple[Path, str, str]]:
    """(videos folder, part, label) of every originals and methods folder holding `compression`."""
    folders, without, compressions = [], [], set()
    for top, label in (("original_sequences", "REAL"), ("manipulated_sequences", "FAKE")):
        base = root / top
        for sub in (d for d in _entries(base) if d.is_dir()) if base.is_dir() else []:
            has = sorted(d.name for d in _entries(sub) if d.is_dir())
            compressions.update(has)
            videos = sub / compression / "videos"
            if videos.is_dir():
                folders.append((videos, sub.name, label))
            else:
                without.append(f"{top}/{sub.name} ({', '.join(has) or 'nothing'})")
    if not folders:
        raise LayoutError(f"{root}: no FaceForensics++ folder holds compression {compression!r} "
                          f"(<original_sequences|manipulated_sequences>/<name>/{compression}/videos/); found "
                          f"{', '.join(sorted(compressions)) or 'no compression folders'}: set COMPRESSION to one of "
                          f"{', '.join(repr(c) for c in COMPRESSIONS)} that is there")
    if without:
        notice(f"{root}: {len(without)} folder(s) hold no {compression}/videos and are left out: {'; '.join(without)}")
    return folders


def _ffpp_names(stem: str, part: str, label: str) -> dict:
    """video_id, original, identity and source identity of one FaceForensics++ video, from its name."""
    if label == "REAL":
        kind = "actors" if part == "actors" or "__" in stem else "youtube"
        person = stem.split("__")[0] if kind == "actors" else stem
        return {"video_id": stem, "original": None, "identity": f"{kind}:{person}", "source": f"{kind}:{person}",
                "pair": (stem, stem) if kind == "youtube" else None}
    names = {"video_id": f"{part}_{stem}", "original": None, "identity": None, "source": None, "pair": None}
    actors, pair = FFPP_ACTORS.fullmatch(stem), FFPP_PAIR.fullmatch(stem)
    if actors:
        target, source, scene, _ = actors.groups()
        names.update(original=f"{target}__{scene}", identity=f"actors:{target}", source=f"actors:{source}")
    elif pair:
        target, source = pair.groups()
        names.update(original=target, identity=f"youtube:{target}", source=f"youtube:{source}", pair=(target, source))
    return names


def list_ffpp(root: str | Path, compression: str = "c23", dataset: str | None = None) -> pd.DataFrame:
    """Every item of a FaceForensics++ tree at `compression` (see the module docstring)."""
    root = Path(root)
    check_compression(compression)
    if not any((root / n).is_dir() for n in ("original_sequences", "manipulated_sequences")):
        raise LayoutError(f"{root} is not a FaceForensics++ tree: it has neither original_sequences/ nor "
                          f"manipulated_sequences/. Expected {EXPECTED['ffpp']}: "
                          f"original_sequences/youtube/{compression}/videos/000.mp4, "
                          f"manipulated_sequences/Deepfakes/{compression}/videos/000_003.mp4")
    dataset = dataset or f"{root.name}-{compression}"
    pairs, ids, has_splits = read_ffpp_splits(root)
    records = []
    for folder, part, label in _ffpp_folders(root, compression):
        method = REAL_METHOD if label == "REAL" else part
        where = f"{folder.relative_to(root)}/"
        for entry in _entries(folder):
            stray = _stray(entry, where)
            if stray is not None:
                records.append(_record(entry, part, label, dataset, method, nfc(entry.name), status=stray[0],
                                       reason=stray[1]))
                continue
            names = _ffpp_names(nfc(entry.stem), part, label)
            split = None
            if names["pair"] is not None:
                target, source = names["pair"]
                split = ids.get(target) if label == "REAL" else pairs.get(frozenset((target, source)))
            records.append(_record(entry, part, label, dataset, method, names["video_id"], names["original"],
                                   names["identity"], names["source"], split=split))
    return _table(records, ("identity", "source_identity", *(("split",) if has_splits else ())))


# --- Celeb-DF ------------------------------------------------------------------------------------------------

def read_celebdf_test_list(root: Path) -> dict[str, str] | None:
    """List_of_testing_videos.txt as {"<folder>/<name>": "REAL"|"FAKE"}, or None when the file is absent."""
    path = root / CELEBDF_TEST_LIST
    if not path.is_file():
        return None
    listed, bad = {}, []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        notice(f"{path} cannot be read ({err}): no video is marked as test")
        return None
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[0] not in ("0", "1"):
            bad.append(number)
            continue
        listed[nfc(fields[1].replace("\\", "/"))] = "REAL" if fields[0] == "1" else "FAKE"
    if bad:
        notice(f"{path}: {len(bad)} line(s) are not '<1|0> <folder>/<name>' (e.g. line {bad[0]}) and are ignored")
    return listed


def _celebdf_names(stem: str, part: str) -> dict:
    fake, real = CELEB_FAKE.fullmatch(stem), CELEB_REAL.fullmatch(stem)
    if part == "Celeb-synthesis" and fake:
        target, source, number = fake.groups()
        return {"original": f"{target}_{number}", "identity": target, "source": source}
    if part == "Celeb-real" and real:
        return {"original": None, "identity": real.group(1), "source": real.group(1)}
    return {"original": None, "identity": None, "source": None}  # YouTube-real: people unknown


def list_celebdf(root: str | Path, dataset: str | None = None) -> pd.DataFrame:
    """Every video of a Celeb-DF tree, with the test list's split (see the module docstring)."""
    root = Path(root)
    folders = {name: _child(root, name) for name in CELEBDF_FOLDERS}
    folders = {name: path for name, path in folders.items() if path is not None}
    if not folders:
        raise LayoutError(f"{root} is not a Celeb-DF tree: none of {', '.join(f'{n}/' for n in CELEBDF_FOLDERS)} is "
                          f"there. Expected {EXPECTED['celebdf']}, and {CELEBDF_TEST_LIST} beside them")
    dataset = dataset or root.name
    listed = read_celebdf_test_list(root)
    records, seen = [], set()
    for part, folder in folders.items():
        label = CELEBDF_FOLDERS[part]
        method = REAL_METHOD if label == "REAL" else part
        for entry in _entries(folder):
            stray = _stray(entry, f"{part}/")
            if stray is not None:
                records.append(_record(entry, part, label, dataset, method, nfc(entry.name), status=stray[0],
                                       reason=stray[1]))
                continue
            relative = f"{part}/{nfc(entry.name)}"
            seen.add(relative)
            names = _celebdf_names(nfc(entry.stem), part)
            record = _record(entry, part, label, dataset, method, nfc(entry.stem), names["original"],
                             names["identity"], names["source"],
                             split=None if listed is None else "test" if relative in listed else "train")
            if listed is not None and relative in listed and listed[relative] != label:
                record.update(status="bad_label", reason=f"{root / CELEBDF_TEST_LIST} lists {relative} as "
                              f"{listed[relative]}, but it lies in {part}/, which holds {label} videos")
            records.append(record)
    for relative, label in sorted((listed or {}).items()):
        if relative in seen:
            continue
        part, _, name = relative.partition("/")
        if part not in folders:  # a listed folder we do not have at all (a partial download): said once below
            continue
        path = folders[part] / name
        names = _celebdf_names(Path(name).stem, part)
        records.append(_record(path, part, label, dataset, REAL_METHOD if label == "REAL" else part, Path(name).stem,
                               names["original"], names["identity"], names["source"], status="missing",
                               reason=f"listed in {root / CELEBDF_TEST_LIST} but the file is absent", split="test"))
    absent = sorted({r.partition("/")[0] for r in listed or {}} - set(folders))
    if absent:
        notice(f"{root}: {CELEBDF_TEST_LIST} lists videos of {', '.join(absent)}, which is not there: they are left out")
    return _table(records, ("identity", "source_identity", *(("split",) if listed is not None else ())))


# --- real/ and fake/ folders ---------------------------------------------------------------------------------

def list_folders(root: str | Path, dataset: str | None = None) -> pd.DataFrame:
    """Every video and image under a tree of real/ and fake/ folders (see the module docstring)."""
    root = Path(root)
    if _label_folder(root) is None:
        raise LayoutError(f"{root} holds no real/ or fake/ folder (any case, any depth): expected {EXPECTED['folders']}")
    dataset = dataset or root.name
    records, has_split = [], False
    for top, _ in _walk_dirs(root):
        folders = top.relative_to(root).parts
        labels = [i for i, name in enumerate(folders) if name.lower() in LABEL_FOLDERS]
        for entry in (p for p in _entries(top) if not p.is_dir()):
            suffix = entry.suffix.lower()
            media = suffix in VIDEO_EXTENSIONS or suffix in IMAGE_EXTENSIONS
            relative = Path(*folders, nfc(entry.name))
            part = "/".join(folders) or "."
            video_id = "__".join(relative.with_suffix("").parts) if media else "__".join(relative.parts)
            if not labels:
                if media:  # a video beside the label folders: we cannot tell what it is
                    records.append(_record(entry, part, None, dataset, None, video_id, status="unlabelled",
                                           reason=f"{entry} lies in no real/ or fake/ folder, so its label is unknown"))
                continue
            at = labels[-1]  # the nearest label folder decides
            label = LABEL_FOLDERS[folders[at].lower()]
            method = REAL_METHOD if label == "REAL" else folders[at + 1] if len(folders) > at + 1 else FAKE_METHOD
            splits = [SPLIT_FOLDERS[n.lower()] for n in folders if n.lower() in SPLIT_FOLDERS]
            has_split = has_split or bool(splits)
            record = _record(entry, part, label, dataset, method, video_id, split=splits[-1] if splits else None)
            if not media:
                record.update(status="unsupported", reason=(
                    f"{entry} is neither a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) nor an image "
                    f"({', '.join(sorted(IMAGE_EXTENSIONS))})"))
            records.append(record)
    return _table(records, ("split",) if has_split else ())


LISTERS = {"ffpp": list_ffpp, "celebdf": list_celebdf, "folders": list_folders}


def resolve_layout(root: str | Path, layout: str = "auto") -> tuple[str, str]:
    """(layout, why) to read `root` with: LAYOUT itself, or what `detect_layout` finds for "auto"."""
    if check_layout(layout) != "auto":
        return layout, "LAYOUT says so"
    name, why = detect_layout(root)
    return name, f"LAYOUT \"auto\" {why}"
