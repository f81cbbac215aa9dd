"""Training as notebooks 04/05 see it: a re-run with other settings keeps the earlier run; a progress bar a student reads.

The real `fit_and_test`, shrunk as in tests/test_training.py (Meso4 at 32 px on the tiny synthetic split).
"""
from __future__ import annotations

import json

import pytest
import torch

from helpers import training
from tests.test_datasets import make_split

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning",
                                         "ignore:.*exists and is not empty:UserWarning")]
SMALL = {"model": "meso4", "model_kwargs": {"dropout": 0.0}, "image_size": 32, "batch_size": 8, "lr": 1e-3,
         "augment": False, "n_boot": 20, "accelerator": "cpu", "seed": 0, "threads": 1}


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run_names")
    return folder, make_split(folder / "faces")


def settings(workdir, **overrides) -> dict:
    folder, split_csv = workdir
    return {**SMALL, "split_csv": str(split_csv), "out_dir": str(folder / "runs"), "cache_dir": str(folder / "cache"),
            **overrides}


def test_a_derived_name_never_replaces_a_finished_run_of_other_settings(workdir):
    run_dir = training.run(training.make_config(**settings(workdir, epochs=1)))
    assert run_dir.name == "meso4-full-s0"
    metrics = (run_dir / "metrics.json").read_text()

    # the same settings: the same name, trained again in its folder (as `make report` does twice)
    assert training.make_config(**settings(workdir, epochs=1, n_boot=50))["run_name"] == "meso4-full-s0"

    with pytest.raises(training.RunNameTaken) as err:
        training.make_config(**settings(workdir, epochs=2, lr=5e-4))
    message = str(err.value)
    assert "epochs 1 there, 2 now" in message and "lr 0.001 there, 0.0005 now" in message
    assert "set RUN_NAME" in message and 'RUN_NAME = "meso4-full-s0-epochs2-lr0.0005"' in message
    assert str(run_dir) in message and "delete" in message
    assert (run_dir / "metrics.json").read_text() == metrics  # the earlier run is untouched

    # RESUME does not get past it either: continuing a run under other settings would mix two recipes
    with pytest.raises(training.RunNameTaken):
        training.make_config(**settings(workdir, epochs=2, resume=True))
    # a name given explicitly is the caller's to reuse (the crop study retrains its own runs this way)
    assert training.make_config(**settings(workdir, epochs=2, run_name="meso4-full-s0"))["run_name"] == "meso4-full-s0"
    # an unfinished run (no metrics.json) holds nothing to lose
    (run_dir / "metrics.json").unlink()
    assert training.make_config(**settings(workdir, epochs=2))["run_name"] == "meso4-full-s0"


def test_an_unreadable_config_of_a_finished_run_is_not_replaced(workdir):
    folder, _ = workdir
    run_dir = folder / "runs" / "meso4-full-s5"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    (run_dir / "config.json").write_text("{not json")
    with pytest.raises(training.RunNameTaken, match="cannot be read"):
        training.make_config(**settings(workdir, seed=5))


def test_the_progress_bar_counts_epochs_from_one_with_loss_and_val_auc(workdir, monkeypatch, capsys):
    monkeypatch.setattr(training, "show_progress", lambda: True)
    training.fit_and_test(settings(workdir, epochs=2, run_name="progress"))
    shown = capsys.readouterr().err
    assert "epoch 1/2" in shown and "epoch 2/2" in shown and "epoch 0/" not in shown
    assert "loss " in shown and "val AUC " in shown
    assert "v_num" not in shown and "Validation" not in shown  # Lightning's own bars are not shown
    last = shown.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("epoch 2/2") and "10/10" in last  # 5 batches per epoch, both epochs counted


def test_headless_runs_show_no_bar(workdir, monkeypatch, capsys):
    monkeypatch.setenv("HELPERS_HEADLESS", "1")
    run_dir = training.fit_and_test(settings(workdir, epochs=1, run_name="headless"))
    assert "epoch 1/1" not in capsys.readouterr().err
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_trained"] == 1
