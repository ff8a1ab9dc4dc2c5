"""`data_rev` picks the dataset version: the run materialises `data.dvc` at that git revision
with DVC, validates and trains on it, and the training run is tagged with it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from smar.core.errors import DatasetError
from smar.data.dataset import dvc_directory_md5
from tests.conftest import own_model_name

pytestmark = pytest.mark.slow
GIT = {
    "GIT_AUTHOR_NAME": "smar",
    "GIT_AUTHOR_EMAIL": "smar@example.com",
    "GIT_COMMITTER_NAME": "smar",
    "GIT_COMMITTER_EMAIL": "smar@example.com",
}


@pytest.fixture
def repo(tiny_data, tmp_path, monkeypatch) -> tuple[Path, str]:
    """A git + DVC repository whose data.dvc has two versions; returns (root, first commit)."""
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    for name, value in GIT.items():
        monkeypatch.setenv(name, value)

    def run(*command: str) -> str:
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    shutil.copytree(tiny_data, root / "data")
    run(sys.executable, "-m", "dvc", "add", "-q", "data")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "first catalog")
    first = run("git", "rev-parse", "HEAD")
    items = pd.read_parquet(root / "data" / "items.parquet")
    items.assign(title=items["title"] + " (new season)").to_parquet(root / "data" / "items.parquet", index=False)
    run(sys.executable, "-m", "dvc", "add", "-q", "data")
    run("git", "commit", "-qam", "second catalog")
    return root, first


def test_a_run_trains_on_the_dataset_version_data_rev_names(repo, tiny_params, prefect_harness, tmp_path):
    from mlflow import MlflowClient

    from smar.pipeline.flow import smar_pipeline

    root, first = repo
    recorded = yaml.safe_load(
        subprocess.run(["git", "show", f"{first}:data.dvc"], capture_output=True, text=True, check=True).stdout
    )
    params = own_model_name(tiny_params, tmp_path, "data-rev")
    summary = smar_pipeline(params_file=str(params), data_dir="data", outputs_dir="outputs", epochs=1, data_rev=first)

    used = Path(summary["data"])
    assert used == Path("outputs/datasets") / f"data-{first[:12]}"
    assert (
        dvc_directory_md5(used) == recorded["outs"][0]["md5"] != dvc_directory_md5(root / "data")
    )  # the first version, not the checkout
    assert not pd.read_parquet(used / "items.parquet")["title"].str.endswith("(new season)").any()
    tags = MlflowClient().get_run(summary["train"]["run_id"]).data.tags
    assert tags["data.rev"] == first and tags["data.dvc_md5"] == recorded["outs"][0]["md5"]


def test_an_unknown_revision_fails_before_any_work_naming_it(repo, tmp_path):
    from smar.data.revision import materialise

    root, _ = repo
    checkout = dvc_directory_md5(root / "data")
    with pytest.raises(DatasetError, match=r"data_rev 'no-such-tag' is not a commit, branch or tag"):
        materialise("no-such-tag", Path("data"), tmp_path / "datasets")
    assert not (tmp_path / "datasets").exists()
    assert dvc_directory_md5(root / "data") == checkout  # the checkout itself is untouched
