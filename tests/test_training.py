"""helpers.training on the tiny synthetic split: metrics, a run that learns, the run folder, resume, the CLI.

Every run is the real `fit_and_test` shrunk (Meso4 at 32 px, 36 training faces, CPU), as in
lightning-hydra-template's tests; nothing is mocked except the network.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score, roc_curve

from helpers.datasets import FaceDataset, read_split
from helpers.metrics import binary_metrics
from helpers.models import PretrainedWeightsMissing, pretrained_weights_path
from helpers.training import (
    DEFAULTS,
    DetectorModule,
    detection_metrics,
    fit_and_test,
    load_model,
    main,
    make_config,
    resume_from,
)
from tests.test_datasets import make_split

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8
STEPS_PER_EPOCH = 5  # 36 training faces in batches of 8
# Meso4 without dropout learns the synthetic signal within 2-3 epochs for every seed tried; dropout 0.5
# on a 16-unit layer makes the training AUC of an epoch this small too noisy to assert on.
SMALL = {"model": "meso4", "model_kwargs": {"dropout": 0.0}, "image_size": 32, "batch_size": 8, "lr": 1e-3,
         "augment": False, "n_boot": 20, "accelerator": "cpu", "seed": 0,
         # one thread: on a busy two-core machine two OpenMP threads make these tiny steps ~10x slower
         "threads": 1}

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*exists and is not empty:UserWarning",
)


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    """fit_and_test sets torch's thread count for the whole process; give the next module its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def split_csv(workdir) -> Path:
    return make_split(workdir / "faces")


def settings(workdir: Path, split_csv: Path, **overrides) -> dict:
    """SMALL plus the paths of this module's folders."""
    return {**SMALL, "split_csv": str(split_csv), "out_dir": str(workdir / "runs"),
            "cache_dir": str(workdir / "cache"), **overrides}


@pytest.fixture(scope="module")
def trained(workdir, split_csv) -> Path:
    """One real run of EPOCHS epochs, shared by the learning test and the run-folder tests."""
    return fit_and_test(settings(workdir, split_csv, epochs=EPOCHS, run_name="learns"))


# --- configuration ------------------------------------------------------------------------------------

def test_make_config_refuses_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['epoch'\]"):
        make_config(epoch=3)
    config = make_config(model="meso4", seed=2)
    assert config["run_name"] == "meso4-full-s2"
    assert set(config) == set(DEFAULTS)
    assert make_config(run_name="mine")["run_name"] == "mine"


# --- metrics ------------------------------------------------------------------------------------------

def _cases():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    noisy = np.clip(0.3 * y + rng.random(60) * 0.7, 0, 1)
    yield "distinct scores", y, noisy
    # rounding makes many ties, and several probabilities exactly 0.5: REAL under `prob > 0.5` in both
    tied = np.round(noisy, 1)
    tied[:6] = 0.5
    yield "ties and 0.5", y, tied
    yield "separable", np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    yield "inverted", np.array([0, 0, 0, 1, 1, 1]), np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    few_real = np.r_[rng.random(5) * 0.6, 0.3 + rng.random(25) * 0.7]
    yield "imbalanced", np.r_[np.zeros(5, int), np.ones(25, int)], few_real


@pytest.mark.parametrize("name,y,prob", list(_cases()), ids=[c[0] for c in _cases()])
def test_logged_metrics_agree_with_scikit_learn_and_helpers_metrics(name, y, prob):
    collection = detection_metrics("val")
    probs, labels = torch.tensor(prob, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    for part in (slice(0, len(y) // 2), slice(len(y) // 2, None)):  # two batches: the state must accumulate
        p, t = probs[part], labels[part]
        # exactly what DetectorModule._step feeds each metric
        collection["acc"].update(p, t.long())
        collection["bal_acc"].update(torch.stack([1 - p, p], dim=1), t.long())
        collection["auc"].update(p, t.long())
        collection["eer"].update(p, t.long())
    values = {k: float(v) for k, v in collection.compute().items()}
    p32 = probs.double().numpy()  # what the metrics saw, float32, compared in float64
    reference = binary_metrics(y, p32)
    assert values["val/acc"] == pytest.approx(accuracy_score(y, p32 > 0.5), abs=1e-6)
    assert values["val/bal_acc"] == pytest.approx(balanced_accuracy_score(y, p32 > 0.5), abs=1e-6)
    assert values["val/auc"] == pytest.approx(roc_auc_score(y, p32), abs=1e-6)
    fpr, tpr, _ = roc_curve(y, p32, drop_intermediate=False)
    closest = np.argmin(np.abs(fpr - (1 - tpr)))  # BinaryEER: the ROC point where FPR and FNR are closest
    assert values["val/eer"] == pytest.approx((fpr[closest] + 1 - tpr[closest]) / 2, abs=1e-6)
    # metrics.json's EER interpolates along the ROC segment that crosses FPR = FNR: within one step of it
    assert abs(values["val/eer"] - reference["eer"]) <= 1 / min(sum(y), len(y) - sum(y)) / 2 + 1e-6
    assert values["val/acc"] == pytest.approx(reference["accuracy"], abs=1e-6)
    assert values["val/bal_acc"] == pytest.approx(reference["balanced_accuracy"], abs=1e-6)


def test_equal_error_rate_extremes_and_reset():
    eer = detection_metrics("val")["eer"]
    eer.update(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0, 0, 1, 1]))
    assert float(eer.compute()) == pytest.approx(0.0)
    eer.reset()
    eer.update(torch.tensor([0.9, 0.8, 0.2, 0.1]), torch.tensor([0, 0, 1, 1]))
    assert float(eer.compute()) == pytest.approx(1.0)
    eer.reset()
    eer.update(torch.full((6,), 0.5), torch.tensor([0, 1, 0, 1, 0, 1]))  # uninformative
    assert float(eer.compute()) == pytest.approx(0.5)


def test_training_messages_come_from_rank_zero_only(tmp_path, monkeypatch, caplog):
    """Under DDP every rank runs fit_and_test: what it says, only global rank 0 says."""
    from pytorch_lightning.utilities import rank_zero_only

    config = make_config(run_name="r", out_dir=str(tmp_path), resume=True)
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"

    def said():
        return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "helpers.training"]

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert resume_from(config, last) is False and said() == []  # the same decision, nothing said
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert resume_from(config, last) is False
    assert said() == [("WARNING", f"r: RESUME is on, but {last} does not exist: the run starts from epoch 1")]
    caplog.clear()
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert resume_from(config, last) is True and said() == []
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert resume_from(config, last) is True and said() == [("INFO", f"r: RESUME continues from {last}")]
    assert resume_from({**config, "resume": False}, last) is False


# --- a run that learns, and the folder it leaves ------------------------------------------------------

def test_training_learns_the_synthetic_signal(trained):
    history = pd.read_csv(trained / "history.csv")
    assert history["train/auc"].iloc[-1] >= 0.9, history[["epoch", "train/auc", "train/loss"]]
    assert history["train/loss"].iloc[-1] < history["train/loss"].iloc[0]
    # held-out groups: it learned the signal, not the faces (>= 0.97 for 10 seed x data combinations tried;
    # the test AUC is not asserted: model.pt is the first epoch to reach the best val AUC, which can be early)
    assert history["val/auc"].iloc[-1] >= 0.9


def test_run_folder_config_and_history(trained, split_csv):
    config = json.loads((trained / "config.json").read_text())
    assert set(DEFAULTS) <= set(config)
    assert config["epochs"] == EPOCHS and config["model"] == "meso4"
    assert config["data"]["train"] == {"faces": 36, "fake": 24, "real": 12}
    assert config["pos_weight"] == pytest.approx(0.5)
    assert config["parameters"] > 0

    history = pd.read_csv(trained / "history.csv")
    assert history["epoch"].tolist() == list(range(EPOCHS))
    for split in ("train", "val"):
        for metric in ("loss", "log_loss", "acc", "bal_acc", "auc", "eer"):
            column = f"{split}/{metric}"
            assert column in history.columns and history[column].notna().all(), column
    checkpoints = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and checkpoints[0].startswith("best-epoch=") and checkpoints[1] == "last.ckpt"
    # last.ckpt is the final epoch even when the best came earlier (Lightning 2.6's save_last=True is not)
    last = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == EPOCHS - 1 and last["global_step"] == EPOCHS * STEPS_PER_EPOCH


def test_run_folder_predictions(trained, split_csv):
    split = read_split(split_csv)
    predictions = pd.read_csv(trained / "predictions.csv", dtype={"video_id": str})
    held_out = split[split.split.isin(["val", "test"])]
    assert len(predictions) == len(held_out)
    assert predictions.split.value_counts().to_dict() == held_out.split.value_counts().to_dict()
    assert sorted(predictions.face_path) == sorted(held_out.face_path)
    assert predictions.prob_fake.between(0, 1).all()
    assert np.allclose(1 / (1 + np.exp(-predictions.logit)), predictions.prob_raw, atol=1e-6)
    # prob_fake is the raw logit through the Platt calibration fitted on validation (metrics.json)
    calibration = json.loads((trained / "metrics.json").read_text())["calibration"]
    assert calibration["method"] == "platt" and calibration["fitted_on"] == "val"
    platt = 1 / (1 + np.exp(-(calibration["slope"] * predictions.logit + calibration["intercept"])))
    assert np.allclose(platt, predictions.prob_fake, atol=1e-6)
    assert (predictions.variant_path == predictions.face_path).all()  # the "full" variant
    # every face carries its identity group from split.csv, the unit the intervals resample
    assert predictions.set_index("face_path").group.to_dict() == held_out.set_index("face_path").group.to_dict()


def test_validation_probs_of_every_epoch(trained, split_csv):
    probs = np.load(trained / "val_probs.npy")
    split = read_split(split_csv)
    assert probs.shape == (EPOCHS, int((split.split == "val").sum()))
    assert ((probs >= 0) & (probs <= 1)).all()


def test_run_folder_metrics(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"frame", "video", "baseline"} <= set(metrics)
    for level in ("frame", "video"):
        assert {"accuracy", "balanced_accuracy", "auc", "log_loss", "eer"} <= set(metrics[level])
        auc = metrics[level]["auc"]
        assert auc["lo"] <= auc["value"] <= auc["hi"]
        # a constant guess calls every face one class: half the classes right, whatever the prevalence
        assert metrics["baseline"][level]["balanced_accuracy"] == pytest.approx(0.5)
    assert metrics["baseline_prevalence_from"] == "train"  # no split_audit.json beside this split.csv
    assert metrics["threshold"]["chosen_on"] == "val" and 0 <= metrics["threshold"]["value"] <= 1
    assert metrics["interval"]["unit"] == "group"
    assert {"frame", "video"} <= set(metrics["val"])
    assert metrics["frame"]["n"]["value"] == 12 and metrics["video"]["n"]["value"] == 6
    assert metrics["epochs_trained"] == EPOCHS and 0 <= metrics["best_epoch"] < EPOCHS
    assert metrics["model"] == "meso4" and metrics["n_boot"] == SMALL["n_boot"]


def test_model_pt_loads_safely_and_reproduces_the_predictions(trained, split_csv):
    saved = torch.load(trained / "model.pt", map_location="cpu", weights_only=True)
    assert {"state_dict", "model", "image_size", "model_kwargs", "variant"} <= set(saved)
    assert saved["model"] == "meso4" and saved["image_size"] == 32 and saved["model_kwargs"] == {"dropout": 0.0}

    model, info = load_model(trained)
    assert not model.training and info["variant"] == "full"
    split = read_split(split_csv)
    test = split[split.split == "test"].head(4)
    dataset = FaceDataset(test, "full", info["image_size"])  # decoded afresh, without the cache
    with torch.no_grad():
        logits = model(torch.stack([dataset[i][0] for i in range(len(test))])).numpy()
    predictions = pd.read_csv(trained / "predictions.csv").set_index("face_path")
    assert np.allclose(logits, predictions.loc[test.face_path, "logit"].to_numpy(), atol=1e-4)


# --- resume -------------------------------------------------------------------------------------------

@pytest.fixture
def steps(monkeypatch) -> list[int]:
    """The batch index of every training step taken in this process, as the real step runs."""
    taken: list[int] = []
    real_step = DetectorModule.training_step

    def counting_step(self, batch, batch_idx):
        taken.append(batch_idx)
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(DetectorModule, "training_step", counting_step)
    return taken


def test_resume_continues_from_last_checkpoint(workdir, split_csv, steps):
    config = settings(workdir, split_csv, run_name="resumed")
    run_dir = fit_and_test({**config, "epochs": 2})
    assert len(steps) == 2 * STEPS_PER_EPOCH
    first = pd.read_csv(run_dir / "history.csv")

    steps.clear()
    assert fit_and_test({**config, "epochs": 4, "resume": True}) == run_dir
    # only epochs 2 and 3 were trained: a restart from scratch would have taken 4 epochs of steps
    assert len(steps) == 2 * STEPS_PER_EPOCH
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    # the epochs before the resume are kept as first logged (Lightning's CSV log restarts on resume)
    pd.testing.assert_frame_equal(history.head(2), first)
    log = pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert log.groupby("epoch")["step"].max().tolist() == [(e + 1) * STEPS_PER_EPOCH - 1 for e in range(4)]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4 * STEPS_PER_EPOCH and last["epoch"] == 3
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_trained"] == 4

    steps.clear()
    fit_and_test({**config, "epochs": 1, "resume": False})
    assert len(steps) == STEPS_PER_EPOCH
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best-epoch=000.ckpt", "last.ckpt"]


def test_resume_without_a_checkpoint_starts_fresh(workdir, split_csv, steps):
    run_dir = fit_and_test(settings(workdir, split_csv, run_name="nothing-to-resume", epochs=1, resume=True))
    assert len(steps) == STEPS_PER_EPOCH
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0]


# --- pretrained weights offline -----------------------------------------------------------------------

@pytest.mark.parametrize("model_kwargs", [{}, {"allow_download": False}], ids=["download-fails", "downloads-off"])
def test_missing_pretrained_weights_surface_through_fit_and_test(workdir, split_csv, tmp_path, monkeypatch,
                                                                 model_kwargs):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise OSError(f"tests never download ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    expected = pretrained_weights_path(torchvision.models.ResNet50_Weights.IMAGENET1K_V2)
    assert str(expected).startswith(str(tmp_path))
    config = settings(workdir, split_csv, run_name="pretrained", model="resnet50", model_kwargs=model_kwargs,
                      pretrained=True, epochs=1)
    with pytest.raises(PretrainedWeightsMissing) as caught:
        fit_and_test(config)
    message = str(caught.value)
    assert expected.name in message and str(expected) in message
    assert "PRETRAINED=False" in message
    assert ("allow_download=False" in message) == bool(model_kwargs)
    assert not expected.exists()


# --- the command line ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_yaml(workdir, split_csv) -> Path:
    path = workdir / "run.yaml"
    path.write_text(yaml.safe_dump(settings(workdir, split_csv, epochs=3, n_boot=10)))
    return path


def test_cli_main_trains_with_overrides(run_yaml, workdir, capsys):
    assert main(["--config", str(run_yaml), "--set", "epochs=1", "run_name=cli-main"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert run_dir == workdir / "runs" / "cli-main"
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0]  # --set beat the file's epochs: 3
    assert json.loads((run_dir / "config.json").read_text())["n_boot"] == 10
    assert (run_dir / "metrics.json").is_file() and (run_dir / "model.pt").is_file()


@pytest.mark.parametrize("extra,message", [
    (["--set", "epoch=3"], r"unknown training setting\(s\) \['epoch'\]"),
    (["--set", "epochs"], r"--set 'epochs' is not KEY=VALUE"),
], ids=["unknown-key", "no-value"])
def test_cli_refuses_bad_settings_with_exit_code_2(run_yaml, workdir, capsys, extra, message):
    assert main(["--config", str(run_yaml), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("training: ") and re.search(message, err), err
    assert not (workdir / "runs" / "meso4-full-s0").exists()  # nothing was trained


def test_cli_refuses_a_missing_config_file(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


def test_cli_as_a_subprocess(run_yaml, workdir):
    done = subprocess.run([sys.executable, "-m", "helpers.training", "--config", str(run_yaml),
                           "--set", "epochs=1", "run_name=cli-subprocess"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    assert run_dir == workdir / "runs" / "cli-subprocess"
    for name in ("config.json", "history.csv", "predictions.csv", "metrics.json", "model.pt"):
        assert (run_dir / name).is_file(), name
