"""`dvc repro` runs the same steps through the CLI, in a fresh git + DVC repository."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smar.core.paths import Paths
from smar.data.dataset import dvc_directory_md5
from tests.conftest import PROJECT

pytestmark = pytest.mark.slow


def test_dvc_repro_runs_every_stage(tiny_data, tiny_params, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(PROJECT / "dvc.yaml", repo)
    params = yaml.safe_load(tiny_params.read_text())
    params["train"]["epochs"] = 2  # what is tested is the stages' wiring, not the model
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(tiny_data, repo / "data")
    shutil.copytree(PROJECT / "smar", repo / "smar", ignore=shutil.ignore_patterns("__pycache__"))  # stage deps
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
    }

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "add", "-q", "data")
    recorded = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    assert dvc_directory_md5(repo / "data") == recorded  # the hash runs are tagged with is DVC's own
    run("dvc", "repro")

    metrics = json.loads(Paths(outputs=repo / "outputs").evaluation.metrics.read_text())
    assert metrics["model"]["recall_at_10"] > metrics["random"]["recall_at_10"]
    registration = json.loads(Paths(outputs=repo / "outputs").registration.read_text())
    assert registration["version"] == "1" and registration["promote"] is True
    assert "recall_at_10" in run("dvc", "metrics", "show")
    assert "up to date" in run("dvc", "status")  # nothing left to reproduce
    lock = (repo / "dvc.lock").read_text()
    assert all(
        f"  {stage}:" in lock for stage in ("validate", "featurize", "train", "export", "index", "evaluate", "register")
    )

    with (repo / "smar" / "model" / "pretrained.py").open("a") as source:  # any file of a package a stage runs
        source.write("\n# edited\n")
    changed = run("dvc", "status")
    assert "train:" in changed and "validate:" not in changed
