"""The GPU-server scripts: SLURM jobs and the prepared GPU check parse, and their dry runs name the right commands."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM = sorted((ROOT / "scripts" / "slurm").glob("*.sbatch"))
SCRIPTS = [*SLURM, ROOT / "bench" / "gpu_check.sh", ROOT / "bench" / "minimal_install.sh"]


def _run(script: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DRY_RUN": "1", **env}, cwd=ROOT)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_array_job_shards_by_task_id_and_count():
    result = _run(ROOT / "scripts" / "slurm" / "extract.sbatch", SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_COUNT="16")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "--only 01" in lines[0] and "01_frame_sampling.SHARD=3/16" in lines[0]
    assert "--only 02" in lines[1] and "02_face_cropping.SHARD=3/16" in lines[1]


def test_the_array_job_refuses_to_run_outside_an_array():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY")}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "slurm" / "extract.sbatch")], capture_output=True,
                            text=True, env={**env, "DRY_RUN": "1"}, cwd=ROOT)
    assert result.returncode != 0 and "sbatch --array" in result.stderr


def test_the_training_job_runs_one_srun_task_per_gpu_with_the_nodes_from_slurm():
    result = _run(ROOT / "scripts" / "slurm" / "train.sbatch", CONFIG="run.yaml", SLURM_NNODES="2",
                  SLURM_NTASKS_PER_NODE="4", RESUME="1")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("srun ") and "-m helpers.training --config run.yaml" in line
    assert "devices=4" in line and "num_nodes=2" in line and "strategy=ddp" in line and "resume=true" in line
    missing = _run(ROOT / "scripts" / "slurm" / "train.sbatch", DRY_RUN="")
    assert missing.returncode != 0 and "CONFIG" in missing.stderr


def test_the_gpu_check_dry_run_lists_every_step(tmp_path):
    result = _run(ROOT / "bench" / "gpu_check.sh", OUT=str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    steps = [line.split("]")[0].strip("[") for line in result.stdout.splitlines()]
    assert steps == ["versions", "nvidia_smi", "resnet50_bf16", "mtcnn_gpu", "mtcnn_cpu", "shrunk_dfdc"]
    assert "--gpu" in result.stdout and "--device cuda" in result.stdout and "bf16-mixed" in result.stdout


def test_the_minimal_install_dry_run_installs_no_extra_and_predicts(tmp_path):
    """bench/minimal_install.sh (1-2 minutes and a 7.6 GB venv, so a bench, not a test): its steps only."""
    result = _run(ROOT / "bench" / "minimal_install.sh", WORK=str(tmp_path), PYTHON="python3")
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert [step.split()[1].rsplit("/", 1)[-1] for step in steps] == ["python3", "pip", "deepfake-study", "python",
                                                                       "deepfake-study"]
    install = steps[1]
    assert install.endswith(f"install --quiet --disable-pip-version-check {ROOT}")  # no [extras]
    assert " predict --run " in steps[-1]
    assert not (tmp_path / "venv").exists()  # a dry run makes nothing


def test_the_training_cli_writes_a_run_yaml_for_the_slurm_job(tmp_path):
    result = subprocess.run([sys.executable, "-m", "helpers.training", "--set", "model=meso4", "epochs=2", "--dump"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    import yaml

    config = yaml.safe_load(result.stdout)
    assert config["model"] == "meso4" and config["epochs"] == 2 and config["run_name"] == "meso4-full-s0"


def test_the_shrunk_profile_overrides_only_paths_videos_size_and_device(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import shrunk_dfdc

    sets = shrunk_dfdc.overrides(tmp_path, tmp_path / "videos", "cpu", "32-true", None)
    for item in sets:
        target, value = item.split("=", 1)
        name = target.split(".")[-1]
        path_like = str(tmp_path) in value
        assert path_like or name in ("VIDEOS_DIR", "MESONET_WEIGHTS_DIR", *shrunk_dfdc.DEVICE_KEYS) or any(
            name in block for block in shrunk_dfdc.SHRINK.values()), item
    assert "01_frame_sampling.VIDEOS_DIR=" + str(tmp_path / "videos") in sets
    assert any(s.startswith("05_resnet[resnet101].EPOCHS=") for s in sets)
