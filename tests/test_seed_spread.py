"""helpers.seed_spread on the tiny synthetic split: a finished run retrained under its own seed and another.

The runs are the real `helpers.training.run` shrunk as in test_training (Meso4 at 32 px, CPU, one thread);
the same seed must give the same predictions, another seed a different run with the same settings.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from helpers import seed_spread, training
from tests.test_datasets import make_split
from tests.test_training import SMALL

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*exists and is not empty:UserWarning",
)


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished 2-epoch run with seed 3, as a notebook would leave it."""
    root = tmp_path_factory.mktemp("seeds")
    split_csv = make_split(root / "faces")
    config = training.make_config(**{**SMALL, "seed": 3}, epochs=2, split_csv=str(split_csv), out_dir=str(root / "runs"),
                                  cache_dir=str(root / "cache"), run_name="meso4-full-s3")
    return training.run(config), root


@pytest.fixture(scope="module")
def table(source):
    run_dir, root = source
    return seed_spread.spread(run_dir, [3, 5], root / "seeds"), root


def test_configs_change_only_seed_folder_and_name(source, tmp_path):
    run_dir, _ = source
    saved = json.loads((run_dir / "config.json").read_text())
    _, configs = seed_spread.seed_configs(run_dir, [7], tmp_path)
    config = configs[0]
    changed = {key for key in training.DEFAULTS if json.dumps(config[key], default=str)
               != json.dumps(saved.get(key, training.DEFAULTS[key]), default=str)}
    assert changed == {"seed", "out_dir", "run_name"}
    assert (config["seed"], config["run_name"], config["resume"]) == (7, "meso4-full-s3-seed7", False)


def test_same_seed_reproduces_the_source_and_another_seed_differs(table):
    rows, root = table
    assert list(rows.columns) == seed_spread.COLUMNS
    assert rows.seed.tolist() == [3, 5]
    assert rows.same_predictions.tolist() == [True, None]
    own = pd.read_csv(root / "seeds" / "meso4-full-s3-seed3" / "predictions.csv")
    other = pd.read_csv(root / "seeds" / "meso4-full-s3-seed5" / "predictions.csv")
    assert own.face_path.tolist() == other.face_path.tolist()
    assert not (own.logit == other.logit).all()
    assert rows[["val_auc", "test_auc", "test_lo", "test_hi"]].notna().all().all()
    assert ((rows.test_lo <= rows.test_auc) & (rows.test_auc <= rows.test_hi)).all()


def test_table_is_written_and_summarised(table):
    rows, root = table
    written = pd.read_csv(root / "seeds" / "seed_spread.csv")
    assert written.seed.tolist() == [3, 5] and written.source.nunique() == 1
    stats = seed_spread.summary(rows)
    assert list(stats.index) == ["mean", "sd", "min", "max"]
    assert stats.loc["mean", "test_auc"] == pytest.approx(rows.test_auc.mean())
    assert stats.loc["sd", "val_auc"] == pytest.approx(rows.val_auc.std(ddof=1))


def test_missing_split_names_the_file(source, tmp_path):
    run_dir, _ = source
    copy = tmp_path / "moved"
    copy.mkdir()
    for name in ("config.json", "history.csv", "predictions.csv", "metrics.json"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    config = json.loads((copy / "config.json").read_text())
    config["split_csv"] = str(tmp_path / "nowhere" / "split.csv")
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="nowhere/split.csv"):
        seed_spread.seed_configs(copy, [0], tmp_path / "out")
    assert seed_spread.main(["--run", str(copy), "--seeds", "0", "--out-dir", str(tmp_path / "out")]) == 1


@pytest.mark.parametrize("seeds", ["a,b", ","])
def test_bad_seeds_exit_with_usage(seeds, source, capsys):
    run_dir, _ = source
    with pytest.raises(SystemExit) as exit_:
        seed_spread.main(["--run", str(run_dir), "--seeds", seeds])
    assert exit_.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def test_not_a_finished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a finished run"):
        seed_spread.seed_configs(tmp_path, [0], tmp_path / "out")
