"""Frame sampling: strategies, pairing, every bad input, sharding and resume after an interruption."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from helpers import frames, manifest
from tests.videos import frame_level_index, write_part, write_video


@pytest.fixture
def dfdc_dir(tmp_path):
    """Two parts with pairs, a missing video, an unlabelled one, a corrupt and a truncated one, and a part without metadata."""
    root = tmp_path / "videos"
    write_part(root / "part_a", {
        "realaaaaaa.mp4": {"label": "REAL"},
        "fakeaaaaa1.mp4": {"label": "FAKE", "original": "realaaaaaa.mp4"},
        "fakeaaaaa2.mp4": {"label": "FAKE", "original": "realaaaaaa.mp4"},
        "goneaaaaaa.mp4": {"label": "FAKE", "original": "realaaaaaa.mp4"},  # listed, absent
        "corruptaaa.mp4": {"label": "REAL"},
        "truncataaa.mp4": {"label": "REAL"},
    }, present={"realaaaaaa.mp4", "fakeaaaaa1.mp4", "fakeaaaaa2.mp4"})
    (root / "part_a" / "corruptaaa.mp4").write_bytes(b"this is not a video at all" * 100)
    full = write_video(tmp_path / "scratch.mp4", n_frames=30).read_bytes()
    (root / "part_a" / "truncataaa.mp4").write_bytes(full[: len(full) // 2])
    write_video(root / "part_a" / "strayaaaaa.mp4")  # present, in no metadata
    # a fake whose original lives in no folder at all (as in DFDC's samples)
    write_part(root / "part_b", {
        "realbbbbbb.mp4": {"label": "REAL"},
        "fakebbbbbb.mp4": {"label": "FAKE", "original": "absentorig.mp4"},
        "fakebbbbb2.mp4": {"label": "FAKE", "original": "absentorig.mp4"},
    })
    write_video(root / "part_nometa" / "lonelyaaaa.mp4")
    return root


def by_video(manifest_: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {v: g for v, g in manifest_.groupby("video_id")}


def test_random_indices_are_deterministic_distinct_and_in_range():
    a = frames.frame_indices(300, 8, "random", 1, "key")
    assert a == frames.frame_indices(300, 8, "random", 1, "key")
    assert len(set(a)) == 8 and all(0 <= i < 300 for i in a) and a == sorted(a)
    assert a != frames.frame_indices(300, 8, "random", 2, "key")
    assert a != frames.frame_indices(300, 8, "random", 1, "other")


def test_uniform_indices_are_evenly_spaced():
    assert frames.frame_indices(300, 1, "uniform", 0, "k") == [150]
    assert frames.frame_indices(300, 4, "uniform", 0, "k") == [37, 112, 187, 262]
    assert frames.frame_indices(300, 4, "uniform", 0, "k") == frames.frame_indices(300, 4, "uniform", 9, "j")


def test_more_frames_than_the_video_has_gives_every_frame():
    assert frames.frame_indices(5, 10, "random", 0, "k") == [0, 1, 2, 3, 4]
    assert frames.frame_indices(5, 10, "uniform", 0, "k") == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("bad", [{"strategy": "middle"}, {"count": 0}])
def test_bad_strategy_or_count_is_refused(bad):
    with pytest.raises(ValueError, match="STRATEGY|FRAMES_PER_VIDEO"):
        frames.frame_indices(10, bad.get("count", 1), bad.get("strategy", "random"), 0, "k")


def test_every_bad_input_is_recorded_and_nothing_crashes(dfdc_dir, tmp_path):
    result = frames.sample_frames(dfdc_dir, tmp_path / "out", frames_per_video=3, workers=1)
    videos = result.drop_duplicates("video_id").set_index("video_id")
    assert videos.loc["goneaaaaaa", "status"] == "missing"
    assert "absent" in videos.loc["goneaaaaaa", "reason"]
    assert videos.loc["corruptaaa", "status"] == "unreadable"
    assert "corruptaaa.mp4" in videos.loc["corruptaaa", "reason"]
    assert videos.loc["truncataaa", "status"] == "unreadable"
    assert videos.loc["strayaaaaa", "status"] == "unlabelled"
    assert videos.loc["lonelyaaaa", "status"] == "unlabelled"
    assert "metadata.json does not exist" in videos.loc["lonelyaaaa", "reason"]
    ok = result[result.status == "ok"]
    assert set(ok.video_id) == {"realaaaaaa", "fakeaaaaa1", "fakeaaaaa2", "realbbbbbb", "fakebbbbbb", "fakebbbbb2"}
    assert (ok.groupby("video_id").size() == 3).all()
    for row in ok.itertuples():  # each JPEG holds the frame its row names
        assert frame_level_index(cv2.imread(row.frame_path)) == row.frame_index
    assert list(result.columns[: len(frames.COLUMNS)]) == frames.COLUMNS
    on_disk = frames.read_frames_manifest(tmp_path / "out" / "frames.csv")
    pd.testing.assert_frame_equal(on_disk, result)


def test_invalid_metadata_json_names_the_file(tmp_path):
    part = tmp_path / "videos" / "part_x"
    write_video(part / "abcdefghij.mp4")
    (part / "metadata.json").write_text("{not json")
    with pytest.raises(manifest.EmptyStageError, match="no video gave a frame \\(1 unlabelled\\)"):
        frames.sample_frames(tmp_path / "videos", tmp_path / "out", workers=1)
    result = frames.read_frames_manifest(tmp_path / "out" / "frames.csv")  # written before the error, with the reason
    assert result.status.tolist() == ["unlabelled"]
    assert "metadata.json is not valid JSON" in result.reason[0]


def test_missing_videos_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="VIDEOS_DIR"):
        frames.sample_frames(tmp_path / "nope", tmp_path / "out")


def test_fakes_share_frame_indices_with_their_original(dfdc_dir, tmp_path):
    result = frames.sample_frames(dfdc_dir, tmp_path / "out", frames_per_video=4, workers=1)
    groups = by_video(result[result.status == "ok"])
    real = list(groups["realaaaaaa"].frame_index)
    assert list(groups["fakeaaaaa1"].frame_index) == real
    assert list(groups["fakeaaaaa2"].frame_index) == real
    # an absent original still ties its fakes together
    assert list(groups["fakebbbbbb"].frame_index) == list(groups["fakebbbbb2"].frame_index)


def test_seeking_gives_the_same_frames_as_grabbing(tmp_path, monkeypatch):
    video = write_video(tmp_path / "long.mp4", n_frames=60)
    wanted = [3, 40, 41, 58]
    monkeypatch.setattr(frames, "SEEK_GAP", 0)
    cap, _ = frames.open_video(video)
    seeking = [frame_level_index(f) for _, f in frames.read_frames(cap, wanted)]
    monkeypatch.setattr(frames, "SEEK_GAP", 10_000)
    cap, _ = frames.open_video(video)
    grabbing = [frame_level_index(f) for _, f in frames.read_frames(cap, wanted)]
    assert seeking == grabbing == wanted


def test_parallel_run_matches_serial_run(dfdc_dir, tmp_path):
    serial = frames.sample_frames(dfdc_dir, tmp_path / "a", frames_per_video=2, workers=1)
    parallel = frames.sample_frames(dfdc_dir, tmp_path / "b", frames_per_video=2, workers=2)
    normalise = lambda m: m.assign(frame_path=m.frame_path.str.replace(str(tmp_path), "", regex=False).str[2:])  # noqa: E731
    pd.testing.assert_frame_equal(normalise(serial), normalise(parallel))


class Interrupt(BaseException):
    """Stands in for a kill: not an Exception, so nothing on the way catches it."""


def test_resume_after_interruption_finishes_without_redoing(dfdc_dir, tmp_path, monkeypatch):
    reference = frames.sample_frames(dfdc_dir, tmp_path / "ref", frames_per_video=2, workers=1)

    calls = []
    real_sample = frames.sample_video

    def dying(task):
        if len(calls) == 4:
            raise Interrupt
        calls.append(task["key"])
        return real_sample(task)

    monkeypatch.setattr(frames, "sample_video", dying)
    with pytest.raises(Interrupt):
        frames.sample_frames(dfdc_dir, tmp_path / "run", frames_per_video=2, workers=1)
    assert not (tmp_path / "run" / "frames.csv").exists()
    first = list(calls)

    calls.clear()
    monkeypatch.setattr(frames, "sample_video", lambda task: (calls.append(task["key"]), real_sample(task))[1])
    resumed = frames.sample_frames(dfdc_dir, tmp_path / "run", frames_per_video=2, workers=1)
    assert not set(first) & set(calls), "finished videos were sampled again"
    assert len(first) + len(calls) == reference.drop_duplicates(["part", "video_id"]).shape[0]
    normalise = lambda m: m.assign(frame_path=m.frame_path.str.replace(str(tmp_path), "", regex=False).str[4:])  # noqa: E731
    pd.testing.assert_frame_equal(normalise(resumed), normalise(reference))

    calls.clear()
    again = frames.sample_frames(dfdc_dir, tmp_path / "run", frames_per_video=2, workers=1)
    assert calls == [] and len(again) == len(resumed)


def test_a_journal_line_cut_by_a_crash_is_redone(dfdc_dir, tmp_path):
    out = tmp_path / "out"
    full = frames.sample_frames(dfdc_dir, out, workers=1)
    journal = next((out / manifest.JOURNAL_DIR).glob("frames*.jsonl"))
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    again = frames.sample_frames(dfdc_dir, out, workers=1)
    pd.testing.assert_frame_equal(again, full)


def test_shards_partition_the_videos_and_keep_pairs_together(dfdc_dir, tmp_path):
    out = tmp_path / "out"
    shards = [frames.sample_frames(dfdc_dir, out, workers=1, shard=f"{i}/3") for i in range(3)]
    ids = [set(s.video_id) for s in shards]
    # every shard's run writes frames.csv from all journals seen so far, so the last one holds everything
    whole = frames.sample_frames(dfdc_dir, tmp_path / "whole", workers=1)
    assert set(shards[-1].video_id) == set(whole.video_id)
    journals = sorted(p.name for p in (out / manifest.JOURNAL_DIR).glob("*.jsonl"))
    assert journals == [f"frames-shard{i}of3.jsonl" for i in range(3)]
    per_shard = [{json.loads(line)["key"] for line in (out / manifest.JOURNAL_DIR / j).read_text().splitlines()} for j in journals]
    assert sum(len(k) for k in per_shard) == len(set().union(*per_shard))  # disjoint
    for keys in per_shard:
        names = {k.split("/")[1] for k in keys}
        if "fakeaaaaa1" in names or "realaaaaaa" in names:
            assert {"fakeaaaaa1", "fakeaaaaa2", "realaaaaaa"} <= names
    assert ids[0] | ids[1] | ids[2] >= set(whole[whole.status == "ok"].video_id)


@pytest.mark.parametrize("shard", ["1", "3/3", "a/b", "-1/2"])
def test_bad_shard_is_refused(shard, tmp_path):
    with pytest.raises(ValueError, match="SHARD"):
        frames.sample_frames(tmp_path, tmp_path / "out", shard=shard)


def test_max_videos_keeps_fakes_with_their_originals(dfdc_dir, tmp_path):
    for budget in (1, 3, 4):
        result = frames.sample_frames(dfdc_dir, tmp_path / f"out{budget}", workers=1, max_videos=budget,
                                      allow_empty=True)  # one video may be the corrupt one
        chosen = set(result.video_id)
        assert len(chosen) == budget
        for group in ({"realaaaaaa", "fakeaaaaa1", "fakeaaaaa2"}, {"fakebbbbbb", "fakebbbbb2"}):
            assert chosen & group in (set(), group)


def test_summaries(dfdc_dir, tmp_path):
    result = frames.sample_frames(dfdc_dir, tmp_path / "out", frames_per_video=2, workers=1)
    table = frames.summarize_videos(result)
    assert table.loc["total", "frames"] == len(frames.usable(result)) == 12
    assert table.loc["part_a", "skipped"] == 4
    skipped = frames.skipped_videos(result)
    assert set(skipped.status) == {"missing", "unreadable", "unlabelled"}


def test_portrait_frames_stay_portrait(tmp_path):
    part = tmp_path / "videos" / "p"
    write_video(part / "portraitaa.mp4", size=(48, 80))
    (part / "metadata.json").write_text(json.dumps({"portraitaa.mp4": {"label": "REAL", "original": None}}))
    result = frames.sample_frames(tmp_path / "videos", tmp_path / "out", workers=1)
    assert (result.width == 48).all() and (result.height == 80).all()
    assert cv2.imread(result.frame_path[0]).shape[:2] == (80, 48)


def test_a_given_table_carries_its_layout_columns_and_images_are_one_frame_items(tmp_path):
    video = write_video(tmp_path / "in" / "realaaaaaa.mp4", n_frames=20)
    image = tmp_path / "in" / "fakeimage.png"
    cv2.imwrite(str(image), np.full((30, 40, 3), 77, np.uint8))
    table = pd.DataFrame([
        {"video_id": "realaaaaaa", "part": "p", "video_path": str(video), "label": "REAL", "original": None,
         "status": "ok", "reason": "", "method": "real", "identity": "x:1", "dataset": "d"},
        {"video_id": "fakeimage", "part": "p", "video_path": str(image), "label": "FAKE", "original": None,
         "status": "ok", "reason": "", "method": "Faces", "identity": "x:2", "dataset": "d"}])
    result = frames.sample_frames("", tmp_path / "out", frames_per_video=4, workers=1, videos=table)
    rows = by_video(result)
    assert len(rows["realaaaaaa"]) == 4 and len(rows["fakeimage"]) == 1
    assert rows["fakeimage"].frame_index.tolist() == [0] and rows["fakeimage"].n_frames.tolist() == [1]
    assert rows["fakeimage"].identity.tolist() == ["x:2"] and set(result.method) == {"real", "Faces"}
    assert not (tmp_path / "out" / frames.LAYOUT_FILE).exists()  # a given table: the layout was not looked at
    assert "given as a table" in frames.layout_note(tmp_path / "out")
    # a changed identity is another input: the item is sampled again, not served from the journal
    again = frames.sample_frames("", tmp_path / "out", frames_per_video=4, workers=1,
                                 videos=table.assign(identity=["x:1", "x:3"]))
    assert by_video(again)["fakeimage"].identity.tolist() == ["x:3"]
