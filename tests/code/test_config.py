"""params.yaml loading and validation through `smar.core.config.load_config`."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from smar.core.config import ModelKind, SmarConfig, load_config
from smar.core.errors import ConfigError
from smar.pipeline.form import PER_RUN, deployment_parameters, run_overrides

PARAMS = Path(__file__).parents[2] / "params.yaml"
SECTION_ATTRIBUTES = {"validate": "validate_", "register": "register_"}


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def _shipped_with(tmp_path, section: str, key: str, value) -> Path:
    """The shipped params.yaml with one value replaced."""
    raw = yaml.safe_load(PARAMS.read_text())
    raw[section][key] = value
    return _write(tmp_path, yaml.safe_dump(raw))


def test_shipped_params_load_with_stated_values():
    config = load_config(PARAMS)
    assert config.register_.model_name == "smar-retriever"
    assert config.register_.threshold == 0.2 and config.evaluate.primary_metric == "recall_at_10"
    assert config.validate_.max_image_pixels == 4096 * 4096
    assert config.evaluate.ks == (10, 50)
    assert config.index.factory == "auto" and config.index.target_recall == 0.95
    assert config.model.text_hidden_size % config.model.text_heads == 0


def test_every_value_in_shipped_params_equals_the_schema_default():
    raw = yaml.safe_load(PARAMS.read_text())
    loaded, defaults = load_config(PARAMS), SmarConfig()
    for section, values in raw.items():
        attribute = SECTION_ATTRIBUTES.get(section, section)
        for key, stated in values.items():
            got = getattr(getattr(loaded, attribute), key)
            expected = tuple(stated) if isinstance(stated, list) else Path(stated) if isinstance(got, Path) else stated
            assert got == expected, f"{section}.{key}: loaded {got!r}, file states {stated!r}"
            assert got == getattr(getattr(defaults, attribute), key), f"{section}.{key} differs from the default"


def test_yaml_section_names_map_to_aliased_attributes(tmp_path):
    path = _write(tmp_path, "validate:\n  example_rows: 7\nregister:\n  model_name: other\n")
    config = load_config(path)
    assert config.validate_.example_rows == 7
    assert config.register_.model_name == "other"
    assert config.train == SmarConfig().train


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(_write(tmp_path, "")) == SmarConfig()


def test_negative_learning_rate_names_file_and_field(tmp_path):
    path = _shipped_with(tmp_path, "train", "learning_rate", -1)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    assert "train.learning_rate" in message
    assert "-1" in message


def test_cutoffs_without_the_primary_metrics_k_are_rejected_before_any_work(tmp_path):
    """ks [20, 50] with the gate on Recall@10 would register and promote, then fail to report."""
    with pytest.raises(ConfigError) as error:
        load_config(_shipped_with(tmp_path, "evaluate", "ks", [20, 50]))
    assert "evaluate: primary_metric recall_at_10 needs k 10 in ks [20, 50]" in str(error.value)
    config = load_config(_write(tmp_path, "evaluate:\n  ks: [20, 50]\n  primary_metric: ndcg_at_20\n"))
    assert (config.evaluate.primary.name, config.evaluate.primary.k, config.evaluate.primary.label) == (
        "ndcg",
        20,
        "NDCG@20",
    )


def test_a_primary_metric_that_is_not_one_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"'recall@10' is not a metric: write NAME_at_K"):
        load_config(_shipped_with(tmp_path, "evaluate", "primary_metric", "recall@10"))


def test_heads_not_dividing_hidden_size_is_rejected(tmp_path):
    path = _shipped_with(tmp_path, "model", "text_heads", 5)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    assert "model" in message
    assert "text_hidden_size (384) must be a multiple of text_heads (5)" in message


def test_unknown_key_is_rejected_by_name(tmp_path):
    path = _shipped_with(tmp_path, "train", "epochz", 3)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert "train.epochz" in str(error.value)


def test_unknown_section_is_rejected_by_name(tmp_path):
    with pytest.raises(ConfigError, match="trian"):
        load_config(_write(tmp_path, "trian:\n  epochs: 2\n"))


def test_wrong_literal_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"evaluate\.split"):
        load_config(_write(tmp_path, "evaluate:\n  split: train\n"))


def test_missing_file_raises_config_error(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="no such parameters file") as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_invalid_yaml_raises_config_error(tmp_path):
    path = _write(tmp_path, "train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_non_mapping_yaml_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_config_is_frozen():
    config = SmarConfig()
    with pytest.raises(ValidationError, match="frozen"):
        config.train.epochs = 3  # type: ignore[misc]


def test_gpu_preset_fine_tunes_the_pretrained_towers_with_larger_sizes():
    gpu = load_config(PARAMS.with_name("params.gpu.yaml"))
    shipped = load_config(PARAMS)
    assert gpu.model.kind == shipped.model.kind
    assert gpu.model.pretrained == "finetune" and shipped.model.pretrained == "frozen"
    assert gpu.model.text_encoder == "minilm" and gpu.model.image_weights == "imagenet"
    assert gpu.model.fusion_width > shipped.model.fusion_width and gpu.model.image_size > shipped.model.image_size
    assert gpu.train.device == "cuda" and gpu.train.batch_size > shipped.train.batch_size
    assert gpu.data == shipped.data and gpu.register_ == shipped.register_


def test_unknown_model_kind_lists_the_choices(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  kind: clip\n")
    with pytest.raises(ConfigError, match=r"model\.kind.*smar.*text_only"):
        load_config(path)


def test_routing_a_kind_that_does_not_train_the_text_view_is_rejected_naming_the_fix(tmp_path):
    path = _shipped_with(tmp_path, "model", "adaptive_routing", True)  # the shipped kind: smar_fused_only
    with pytest.raises(ConfigError, match=r"not kind smar_fused_only: set kind: smar, or adaptive_routing: false"):
        load_config(path)


def test_batch_that_micro_batches_do_not_divide_is_rejected(tmp_path):
    (tmp_path / "p.yaml").write_text("train:\n  batch_size: 100\n  accumulation_steps: 3\n")
    with pytest.raises(ConfigError, match=r"train.*batch_size \(100\) must be a multiple of accumulation_steps \(3\)"):
        load_config(tmp_path / "p.yaml")


def test_a_zero_shot_blend_outside_zero_and_one_is_rejected_naming_the_factor(tmp_path):
    (tmp_path / "p.yaml").write_text("train:\n  zero_shot_blend: [0.5, 1.5]\n")
    with pytest.raises(ConfigError, match=r"train.zero_shot_blend.*factors \[1.5\] are outside \[0, 1\]"):
        load_config(tmp_path / "p.yaml")


def test_overrides_are_laid_over_the_file_and_empty_fields_keep_its_values(tmp_path):
    path = _write(tmp_path, "train:\n  epochs: 3\n  batch_size: 64\nmodel:\n  kind: late_fusion\n")
    config = load_config(path, {"train": {"epochs": 7, "batch_size": None}, "register": {"model_name": "ui-run"}})
    assert (config.train.epochs, config.train.batch_size) == (7, 64)  # set: overridden; empty: the file's value
    assert config.model.kind == "late_fusion" and config.register_.model_name == "ui-run"


def test_an_invalid_override_names_the_field_after_merging(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"with the run's overrides: invalid parameters:\n  - train.epochs: .*greater than or equal to 1",
    ):
        load_config(_write(tmp_path, "train:\n  epochs: 3\n"), {"train": {"epochs": 0}})


def test_a_run_lays_its_parameters_and_overrides_over_the_file(tmp_path):
    path = _write(tmp_path, "train:\n  epochs: 3\n  weight_decay: 0.01\nmodel:\n  kind: late_fusion\n")
    given = run_overrides({"train": {"weight_decay": 0.02}}, model_kind="text_only", epochs=5, batch_size=None)
    config = load_config(path, given)
    assert (config.model.kind, config.train.epochs, config.train.weight_decay) == ("text_only", 5, 0.02)
    assert config.train.batch_size == SmarConfig().train.batch_size  # not set anywhere: the file's (default) value
    assert load_config(path, run_overrides(None)) == load_config(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train": {"weight_decayy": 0.02}}, r"overrides: train.weight_decayy is not a setting .*'weight_decay'"),
        ({"trian": {"epochs": 2}}, r"overrides: 'trian' is not a section of params.yaml; did you mean 'train'"),
        ({"train": 2}, r"overrides.train: expected an object of train settings"),
        ([1, 2], r"overrides: expected a JSON object of params.yaml sections"),
        ({"train": {"epochs": 4}}, r"overrides: train.epochs is 4 there and 2 in the parameter epochs"),
    ],
)
def test_a_wrong_override_fails_naming_the_field_and_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_overrides(overrides, epochs=2)


def test_the_run_form_starts_from_the_files_values():
    """What prefect.yaml's build step and `smar pipeline --serve` put in the deployment's form."""
    shown = deployment_parameters(str(PARAMS), "data", "outputs")
    config = load_config(PARAMS)
    assert (shown["model_kind"], shown["epochs"], shown["learning_rate"], shown["batch_size"]) == (
        config.model.kind,
        config.train.epochs,
        config.train.learning_rate,
        config.train.batch_size,
    )
    assert shown["overrides"] == {} and shown["data_rev"] == ""
    per_run = {name: shown[name] for name in PER_RUN}
    assert load_config(PARAMS, run_overrides(shown["overrides"], **per_run)) == config


def test_the_run_form_is_a_handful_of_plain_fields():
    """Each flow parameter renders as one input of its own type: no nested sections, no type tabs
    (a field that may be None renders as a choice between its type and None)."""
    import typing

    from prefect.utilities.callables import parameter_schema

    from smar.pipeline.flow import smar_pipeline, smar_reindex

    pipeline = parameter_schema(smar_pipeline).model_dump_for_openapi()["properties"]
    assert list(pipeline) == [*PER_RUN, "data_rev", "overrides", "params_file", "data_dir", "outputs_dir"]
    assert all("anyOf" not in field and "$ref" not in field and "type" in field for field in pipeline.values())
    assert pipeline["model_kind"]["enum"] == list(typing.get_args(ModelKind))  # the form offers the kinds there are
    assert pipeline["epochs"]["minimum"] == 1 and pipeline["overrides"]["type"] == "object"
    reindex = parameter_schema(smar_reindex).model_dump_for_openapi()["properties"]
    assert list(reindex) == list(pipeline)[len(PER_RUN) :]  # the same shape where it applies
    assert all(reindex[name]["type"] == pipeline[name]["type"] for name in reindex)
