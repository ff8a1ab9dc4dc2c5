"""The flows' run form: the few settings people change per run as parameters of their own, and
every other value of the params file behind one `overrides` field.

Prefect's UI renders a flow's parameters as the deployment's run form. A parameter left empty
(None) keeps the params file's value; the deployment's form starts from the file's values
(`deployment_parameters`, called by prefect.yaml's build step and by `smar pipeline --serve`).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from pydantic import BaseModel, WithJsonSchema

from smar.core.config import SmarConfig, load_config
from smar.core.errors import ConfigError

# The flow parameter -> the params.yaml field it sets.
PER_RUN = {
    "model_kind": ("model", "kind"),
    "epochs": ("train", "epochs"),
    "learning_rate": ("train", "learning_rate"),
    "batch_size": ("train", "batch_size"),
}
OVERRIDES = "overrides"


def _sections() -> dict[str, type[BaseModel]]:
    """params.yaml's section names (as the file spells them) and their settings' models."""
    sections = {}
    for name, field in SmarConfig.model_fields.items():
        model = field.annotation
        if not isinstance(model, type):  # import: ImportConfig | None
            [model] = [arg for arg in model.__args__ if arg is not type(None)]
        sections[field.alias or name] = model
    return sections


def _per_run(section: str, key: str):
    """The type of a per-run parameter: the field's own, or None for the file's value. The form shows
    the field's type, range and choices, without a None choice: it starts from the file's value."""
    model = _sections()[section]
    shown = {k: v for k, v in model.model_json_schema()["properties"][key].items() if k not in ("default", "title")}
    shown.pop("description", None)  # the flow's docstring describes its parameters
    return Annotated[model.model_fields[key].annotation | None, WithJsonSchema(shown)]


ModelKindParameter = _per_run(*PER_RUN["model_kind"])
EpochsParameter = _per_run(*PER_RUN["epochs"])
LearningRateParameter = _per_run(*PER_RUN["learning_rate"])
BatchSizeParameter = _per_run(*PER_RUN["batch_size"])
# Shown as a text box and a JSON editor; empty ("" and {}) means none.
DataRevParameter = Annotated[str | None, WithJsonSchema({"type": "string"})]
OverridesParameter = Annotated[dict[str, Any] | None, WithJsonSchema({"type": "object"})]


def run_overrides(overrides: dict | None, **per_run) -> dict:
    """What a run lays over the params file: `overrides` (params.yaml sections) and the per-run
    parameters set, checked by name. Values are checked by `load_config`, after merging."""
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"{OVERRIDES}: expected a JSON object of params.yaml sections, e.g. "
            f'{{"train": {{"weight_decay": 0.02}}}}, got {overrides!r}.'
        )
    sections = _sections()
    for section, values in overrides.items():
        if section not in sections:
            raise ConfigError(
                f"{OVERRIDES}: {section!r} is not a section of params.yaml{_did_you_mean(section, sections)} "
                f"(sections: {', '.join(sections)})."
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(
                f"{OVERRIDES}.{section}: expected an object of {section} settings, e.g. "
                f'{{"{section}": {{"{next(iter(sections[section].model_fields))}": ...}}}}, got {values!r}.'
            )
        settings = sections[section].model_fields
        for key in values:
            if key not in settings:
                raise ConfigError(
                    f"{OVERRIDES}: {section}.{key} is not a setting of params.yaml{_did_you_mean(key, settings)} "
                    f"(the {section} settings: {', '.join(settings)})."
                )
    merged = {section: dict(values or {}) for section, values in overrides.items()}
    for parameter, value in per_run.items():
        if value is None:
            continue
        section, key = PER_RUN[parameter]
        given = merged.setdefault(section, {}).get(key)
        if given is not None and given != value:
            raise ConfigError(
                f"{OVERRIDES}: {section}.{key} is {given!r} there and {value!r} in the parameter {parameter}: "
                f"set it once, in {parameter}."
            )
        merged[section][key] = value
    return merged


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def deployment_parameters(params_file: str, data_dir: str, outputs_dir: str) -> dict:
    """The smar-pipeline deployment's default parameters: the per-run fields start from the params
    file's values now, `overrides` and `data_rev` empty."""
    config = load_config(params_file).model_dump(mode="json", by_alias=True)
    shown = {parameter: config[section][key] for parameter, (section, key) in PER_RUN.items()}
    return {
        **shown,
        "data_rev": "",
        OVERRIDES: {},
        "params_file": params_file,
        "data_dir": data_dir,
        "outputs_dir": outputs_dir,
    }
