"""Model kinds run through the same pipeline by changing one parameter, `model.kind`, one for
each set of index views a kind serves (text, image, multimodal, multimodal and text routed), and
their registered versions serve queries."""

import pytest

from smar.model.kinds import KINDS

pytestmark = pytest.mark.slow


# A kind's towers are the model's business (each kind trains and encodes in tests/model/test_kinds.py);
# what the pipeline sees of it is its index views. The default, smar_fused_only, runs through this
# pipeline in most tests; smar is routed here; smar_no_xattn serves the multimodal view as they and
# late_fusion do.
CASES = [("text_only", False), ("image_only", False), ("late_fusion", False), ("smar", True)]
assert {kind for kind, _ in CASES} | {"smar_fused_only", "smar_no_xattn"} == set(KINDS)  # none forgotten


@pytest.mark.parametrize(("kind", "routing"), CASES)
def test_kind_runs_through_the_pipeline_and_serves(kind, routing, prefect_harness, tiny_data, tiny_params, tmp_path):
    import mlflow.pyfunc
    import pandas as pd
    from mlflow import MlflowClient

    from smar.pipeline.flow import smar_pipeline

    overrides = {  # laid over the params file, as the Prefect UI's run form sends them
        "model": {"adaptive_routing": routing},
        "register": {"model_name": f"kinds-{kind}{'-routed' if routing else ''}"},  # its own registry entry
    }
    summary = smar_pipeline(
        model_kind=kind,
        epochs=1,
        overrides=overrides,
        params_file=str(tiny_params),
        data_dir=str(tiny_data),
        outputs_dir=str(tmp_path / "outputs"),
    )

    registration = summary["register"]
    run = MlflowClient().get_run(registration["run_id"])
    assert run.data.tags["model.kind"] == kind and run.data.params["model.kind"] == kind
    assert summary["evaluate"]["model"]["recall_at_10"] > 0
    model = mlflow.pyfunc.load_model(f"models:/{registration['model_name']}/{registration['version']}")
    answer = model.predict(pd.DataFrame({"query": ["red striped mug", "acme lamp"]}), params={"k": 3})
    assert answer["item_ids"].map(len).tolist() == [3, 3]
    expected_indexes = {"text_only": {"text"}, "image_only": {"image"}}.get(
        kind, {"multimodal", "text"} if routing else {"multimodal"}
    )
    assert summary["index"]["views"] == sorted(expected_indexes)
    assert set(answer["index"]) <= expected_indexes
    assert set(summary["evaluate"]["served_by_index"]) <= expected_indexes
