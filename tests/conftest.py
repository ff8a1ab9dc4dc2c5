"""Shared test set-up: an isolated MLflow store and Prefect home, a tiny dataset and config."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from smar.core.process import setup

_STATE = Path(tempfile.mkdtemp(prefix="smar-tests-"))
atexit.register(shutil.rmtree, _STATE, ignore_errors=True)  # the session's stores: gigabytes of registered versions
os.environ.update(  # this session's own stores, on the CPU; the rest as every smar process has it
    {
        "PREFECT_HOME": str(_STATE / "prefect"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{_STATE / 'mlruns' / 'mlflow.db'}",
        "CUDA_VISIBLE_DEVICES": "",
    }
)
if os.environ.get("PYTEST_XDIST_WORKER"):  # workers share the cores: one thread each, or they fight over them
    os.environ.setdefault("OMP_NUM_THREADS", "1")
setup()

PROJECT = Path(__file__).resolve().parents[1]

# Encoders trained from scratch (a small BERT, timm's test_efficientnet): tests of the
# machinery, where the pretrained weights would only cost time.
SCRATCH_MODEL = {"text_encoder": "scratch", "image_backbone": "test_efficientnet", "image_weights": "none"}

# Small enough to train in seconds on 2 CPU cores, large enough to beat random ranking clearly.
TINY_PARAMS = {
    "model": {"fusion_width": 32, "image_size": 32},
    "train": {"epochs": 8, "batch_size": 32, "learning_rate": 0.003},
    "evaluate": {"plot_max_k": 50, "random_baseline_draws": 2},
    "register": {"threshold": 0.05},
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from smar.data.synth import PRESETS, synthesize

    root = tmp_path_factory.mktemp("dataset") / "data"
    synthesize(PRESETS["tiny"], root)
    return root


@pytest.fixture(scope="session")
def tiny_params(tmp_path_factory) -> Path:
    """The shipped params.yaml with TINY_PARAMS laid over it (DVC needs every section present)."""
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    for section, values in TINY_PARAMS.items():
        params[section].update(values)
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def own_model_name(params: Path, directory: Path, model_name: str) -> Path:
    """A copy of `params` that registers under `model_name`: every test that touches the registry
    uses a name of its own, so no test depends on which ran before it."""
    settings = yaml.safe_load(params.read_text())
    settings["register"]["model_name"] = model_name
    path = Path(directory) / f"params-{model_name}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


LONGEST_FIRST = ["production", "pipeline", "model", "serving", "traffic", "data", "code"]  # tests/ folders


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks into the node ids
def pytest_collection_modifyitems(items):
    """With `-n` (pytest-xdist, --dist loadgroup): each module's tests stay on one worker, so its
    module fixtures (a trained model) are built once, and the production tests share one
    topology of servers. Groups are handed out in this order (the Makefile passes
    --no-loadscope-reorder): the longest first, so no long one is left for the end."""
    for item in items:
        group = "production" if item.nodeid.startswith("tests/production/") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: LONGEST_FIRST.index(item.nodeid.split("/")[1]))


def pytest_runtest_setup(item):
    """On an xdist worker with --dist loadgroup, every node id carries its group (`...@group`);
    without it each worker would build the module fixtures and start the servers again."""
    if item.config.getoption("loadgroup", False) and "@" not in item.nodeid:
        pytest.fail(
            f"pytest-xdist's loadgroup did not group the tests (pytest {pytest.__version__}): "
            "install the versions constraints.txt pins (pip install -c constraints.txt -e '.[test]')",
            pytrace=False,
        )
