"""A dataset that fails validation stops every entry point before training, and registers nothing."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from smar.data.validation import ValidationFailed
from tests.conftest import own_model_name

pytestmark = pytest.mark.slow


@pytest.fixture
def broken_data(tiny_data, tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    items = pd.read_parquet(data / "items.parquet")
    items.loc[7, "title"] = "   "
    items.to_parquet(data / "items.parquet", index=False)
    return data


MODEL_NAME = "broken-data"


def _registered_versions() -> int:
    from mlflow import MlflowClient

    from smar.core import tracking

    tracking.configure()
    return len(MlflowClient().search_model_versions(f"name='{MODEL_NAME}'"))


def test_flow_stops_at_validation_and_registers_nothing(prefect_harness, broken_data, tiny_params, tmp_path):
    from smar.pipeline.flow import smar_pipeline

    params = own_model_name(tiny_params, tmp_path, MODEL_NAME)
    before = _registered_versions()
    outputs = tmp_path / "outputs"
    with pytest.raises(ValidationFailed, match=r"items.parquet \[title\].*I0000007"):
        smar_pipeline(params_file=str(params), data_dir=str(broken_data), outputs_dir=str(outputs))
    assert not (outputs / "model").exists() and not (outputs / "index").exists()
    assert _registered_versions() == before


def test_cli_reports_bad_input_without_a_traceback(broken_data, tiny_params, tmp_path):
    smar = Path(sys.executable).with_name("smar")
    validate = subprocess.run(
        [smar, "validate", "--params", tiny_params, "--data", broken_data, "--out", tmp_path / "outputs"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert validate.returncode == 1
    assert "items.parquet [title]" in validate.stderr and "I0000007" in validate.stderr
    assert "Traceback" not in validate.stderr

    train = subprocess.run(
        [smar, "train", "--params", tiny_params, "--data", broken_data, "--out", tmp_path / "outputs"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert train.returncode == 1 and "failed validation" in train.stderr and "Traceback" not in train.stderr

    bad_params = tmp_path / "bad.yaml"
    bad_params.write_text("train:\n  learning_rate: -1\n")
    config = subprocess.run([smar, "validate", "--params", bad_params], capture_output=True, text=True, env=os.environ)
    assert config.returncode == 1 and "train.learning_rate" in config.stderr and "Traceback" not in config.stderr
