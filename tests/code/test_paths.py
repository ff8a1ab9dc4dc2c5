"""Every output's name is in smar.core.paths, and dvc.yaml declares exactly those outputs."""

from pathlib import Path

import yaml

from smar.core.paths import Paths
from tests.conftest import PROJECT


def declared_outputs(stage: dict) -> set[Path]:
    """A dvc.yaml stage's outs and metrics, as paths (an entry is a path or {path: options})."""
    entries = stage.get("outs", []) + stage.get("metrics", [])
    return {Path(next(iter(entry)) if isinstance(entry, dict) else entry) for entry in entries}


def test_dvc_stages_declare_the_outputs_paths_names():
    paths = Paths()  # dvc.yaml runs the CLI's defaults: data/ and outputs/
    evaluation = paths.evaluation
    written = {
        "validate": {paths.validation.report, paths.validation.data_docs},
        "featurize": {paths.features.root},
        "train": {paths.model.root},
        "export": {paths.embeddings.root},
        "index": {paths.index.root},
        "evaluate": {evaluation.metrics, evaluation.recall_curve, evaluation.recall_plot, evaluation.per_query},
        "register": {paths.registration},
    }
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    assert {name: declared_outputs(stage) for name, stage in stages.items()} == written


def test_file_names_are_the_same_for_any_copy_of_a_directory(tmp_path):
    """A registered version's copy of the model and index reads under the names the steps wrote."""
    from smar.core.paths import IndexFiles, ModelFiles

    assert ModelFiles(tmp_path).weights.name == Paths().model.weights.name
    assert IndexFiles(tmp_path).faiss("text") == tmp_path / Paths().index.faiss("text").name
    for view in ("multimodal", "text"):
        IndexFiles(tmp_path).faiss(view).touch()
    assert IndexFiles(tmp_path).views() == ["multimodal", "text"]
