"""Training survives SIGKILL and Prefect retries: it resumes from its checkpoint, in the same MLflow run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from smar.core.config import load_config
from smar.core.paths import Paths
from smar.core.tracking import run_id_of
from smar.pipeline import steps

pytestmark = pytest.mark.slow
EVERY = 3  # checkpoint every 3 steps


@pytest.fixture
def config(tiny_params):
    config = load_config(tiny_params)
    return config.model_copy(
        update={
            "train": config.train.model_copy(update={"checkpoint_every_steps": EVERY}),
            "register_": config.register_.model_copy(update={"model_name": "resume"}),  # its own registry entry
        }
    )


def validated(config, data, outputs) -> Paths:
    paths = Paths(data, outputs)
    steps.validate(config, paths)
    steps.featurize(config, paths)
    return paths


def test_training_killed_with_sigkill_resumes_and_matches_an_uninterrupted_one(config, tiny_data, tmp_path):
    from mlflow import MlflowClient

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True, exclude_none=True)))
    paths = validated(config, tiny_data, tmp_path / "killed")
    command = [
        str(sys.executable),
        "-m",
        "smar",
        "train",
        "--params",
        str(params),
        "--data",
        str(tiny_data),
        "--out",
        str(paths.outputs),
    ]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    state_file = paths.checkpoint_dir / "training_state.pt"
    deadline = time.monotonic() + 300
    while not (state_file.is_file() and torch.load(state_file, weights_only=False)["step"] >= 2 * EVERY):
        assert first.poll() is None, (
            f"training ended before it could be killed:\n{first.stderr.read().decode()[-2000:]}"
        )
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    saved = torch.load(state_file, weights_only=False)
    assert not paths.model.root.exists()  # nothing half-written where the model goes

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"step {saved['step']} of" in second.stderr and "resuming" in second.stderr
    assert not paths.checkpoint_dir.exists()
    run_id = run_id_of(paths.model.root)
    assert run_id == saved["run_id"]
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_step"] == str(saved["step"])
    logged_steps = {m.step for m in MlflowClient().get_metric_history(run_id, "train_loss")}
    assert logged_steps == set(range(1, int(run.data.params["train.total_steps"]) + 1))

    whole = validated(config, tiny_data, tmp_path / "whole")
    steps.train(config, whole)
    resumed, uninterrupted = (torch.load(p.model.weights) for p in (paths, whole))
    for name, tensor in uninterrupted.items():
        assert torch.allclose(resumed[name], tensor, atol=1e-5), name


def test_prefect_retry_of_a_failed_training_reuses_its_mlflow_run(
    config, prefect_harness, tiny_data, tiny_params, tmp_path, monkeypatch
):
    from mlflow import MlflowClient

    import smar.training.loop
    from smar.pipeline.flow import smar_pipeline

    real, calls = smar.training.loop.routed_score, []

    def fails_once(*args, **kwargs):  # the first end of epoch fails, after some checkpoints were written
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated crash in the first epoch")
        return real(*args, **kwargs)

    monkeypatch.setattr(smar.training.loop, "routed_score", fails_once)
    overrides = config.model_dump(mode="json", by_alias=True)
    summary = smar_pipeline(
        params_file=str(tiny_params),
        data_dir=str(tiny_data),
        outputs_dir=str(tmp_path / "outputs"),
        overrides=overrides,
    )

    run_id = summary["train"]["run_id"]
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "resumed_from_step" in run.data.tags
    flow_run_id = run.data.tags["prefect.flow_run_id"]
    runs = client.search_runs([run.info.experiment_id], filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    assert [r.info.run_id for r in runs] == [run_id]  # no dead run left behind by the failed attempt
    assert summary["register"]["version"]
