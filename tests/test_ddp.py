"""Multi-process training without a GPU: DDP over gloo on two CPU processes, through the notebooks' code path.

`training.run` with `devices: 2` is what notebooks 04-06 call; it writes run.yaml and starts
`python -m helpers.training --config run.yaml`, which Lightning turns into two ranks.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import training
from helpers.datasets import FaceDataModule, read_split
from tests.test_datasets import make_split
from tests.test_training import SMALL

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    split_csv = make_split(root / "faces", groups=10)
    config = {**SMALL, "split_csv": str(split_csv), "out_dir": str(root / "runs"), "cache_dir": str(root / "cache"),
              "run_name": "ddp", "epochs": 2, "devices": 2, "accelerator": "cpu", "batch_size": 5}
    run_dir = training.run(config)
    return run_dir, split_csv


def test_ddp_on_two_cpu_processes_writes_one_complete_run_folder(ddp_run):
    run_dir, split_csv = ddp_run
    for name in ("config.json", "history.csv", "predictions.csv", "metrics.json", "model.pt", "run.yaml"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["devices"] == 2 and config["strategy"] == "auto"
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1]  # one row per epoch: rank 1 wrote no second log
    assert history["val/auc"].notna().all()
    assert not (run_dir.parent / "ddp-1").exists() and sorted(p.name for p in run_dir.parent.iterdir()) == ["ddp"]


def test_ddp_predictions_hold_every_test_face_exactly_once(ddp_run):
    run_dir, split_csv = ddp_run
    split = read_split(split_csv)
    predictions = pd.read_csv(run_dir / "predictions.csv")
    # DistributedSampler pads a split to a multiple of the world size with repeats: none may reach the scores
    for name in ("val", "test"):
        expected = sorted(split.loc[split.split == name, "face_path"])
        assert sorted(predictions.loc[predictions.split == name, "face_path"]) == expected
    assert not predictions.duplicated(["face_path", "split"]).any()


def test_ddp_metrics_equal_a_single_process_scoring_of_the_same_checkpoint(ddp_run):
    run_dir, split_csv = ddp_run
    model, saved = training.load_model(run_dir)
    data = FaceDataModule(split_csv, "full", saved["image_size"], batch_size=7, cache_dir="", augment=False)
    data.setup()
    raw = training.write_predictions(model, data, run_dir, torch.device("cpu"))
    scored = pd.read_csv(run_dir / "predictions.csv").set_index("face_path")
    assert np.allclose(raw.set_index("face_path").logit, scored.loc[raw.face_path, "logit"], atol=1e-4)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    from helpers import protocol  # noqa: PLC0415

    prevalence, source = protocol.train_prevalence(split_csv, data.frames["train"])
    _, again = protocol.evaluate_predictions(raw, prevalence, source, n_boot=SMALL["n_boot"], seed=SMALL["seed"])
    for level in ("frame", "video"):
        for key in ("auc", "log_loss", "balanced_accuracy"):
            assert again[level][key]["value"] == pytest.approx(metrics[level][key]["value"], abs=1e-4), (level, key)
