"""Step 1, validate: the dataset against Great Expectations suites plus image checks.

A failure raises `ValidationFailed` listing every failed check (file, column, example rows).
The report is written either way, with `success` false on failure, and `train` refuses to
start unless the report says the dataset passed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from smar.config import SmarConfig, ValidateConfig
from smar.dataset import SPLITS, Dataset, load_dataset
from smar.errors import SmarError
from smar.paths import Paths, require, write_text_atomic


@dataclass
class CheckResult:
    file: str
    column: str
    check: str
    success: bool
    unexpected_count: int = 0
    examples: list = field(default_factory=list)

    def describe(self) -> str:
        examples = f"; e.g. {', '.join(map(str, self.examples))}" if self.examples else ""
        return f"{self.file} [{self.column}] {self.check}: {self.unexpected_count} row(s) fail{examples}"


class ValidationFailed(SmarError):
    def __init__(self, data_dir: Path, failures: list[CheckResult]):
        self.failures = failures
        lines = "\n".join(f"  - {failure.describe()}" for failure in failures)
        super().__init__(
            f"{data_dir}: dataset failed validation ({len(failures)} check(s)); nothing downstream ran.\n{lines}\n"
            "Fix the listed rows in the source data (or re-run the importer) and run again."
        )


def validate(config: SmarConfig, paths: Paths) -> dict:
    """Validate `paths.data`; write the report to `paths.validation_report` and return it."""
    paths.validation_report.unlink(missing_ok=True)  # a report only ever describes the data as it is now
    dataset = load_dataset(paths.data)
    settings = config.validate_
    results = _expectation_results(dataset, settings) + _image_results(dataset, settings)
    failures = [r for r in results if not r.success]
    report = {
        "data": str(paths.data),
        "success": not failures,
        "counts": {"items": len(dataset.items), "queries": len(dataset.queries), "qrels": len(dataset.qrels)},
        "checks": [asdict(r) for r in results],
    }
    write_text_atomic(paths.validation_report, json.dumps(report, indent=2) + "\n")
    if failures:
        raise ValidationFailed(paths.data, failures)
    return report


def require_passed(paths: Paths) -> None:
    """Training starts only from a dataset whose latest validation passed."""
    report = json.loads(require(paths.validation_report, "validate").read_text())
    if not report.get("success"):
        raise ValidationFailed(paths.data, [CheckResult(**check) for check in report["checks"] if not check["success"]])


def _suites(dataset: Dataset) -> dict[str, tuple[object, list[str], list]]:
    """file name -> (frame, id columns quoted in examples, expectations)."""
    import great_expectations as gx

    e = gx.expectations
    item_ids = dataset.items["item_id"].dropna().unique().tolist()
    query_ids = dataset.queries["query_id"].dropna().unique().tolist()
    return {
        "items.parquet": (
            dataset.items,
            ["item_id"],
            [
                e.ExpectColumnValuesToNotBeNull(column="item_id"),
                e.ExpectColumnValuesToBeUnique(column="item_id"),
                e.ExpectColumnValuesToNotBeNull(column="title"),
                e.ExpectColumnValuesToMatchRegex(column="title", regex=r"\S"),
                e.ExpectColumnValuesToNotBeNull(column="category"),
                e.ExpectColumnValuesToNotBeNull(column="image"),
            ],
        ),
        "queries.parquet": (
            dataset.queries,
            ["query_id"],
            [
                e.ExpectColumnValuesToNotBeNull(column="query_id"),
                e.ExpectColumnValuesToBeUnique(column="query_id"),
                e.ExpectColumnValuesToNotBeNull(column="text"),
                e.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S"),
            ],
        ),
        "qrels.parquet": (
            dataset.qrels,
            ["query_id", "item_id"],
            [
                e.ExpectColumnValuesToBeInSet(column="query_id", value_set=query_ids),
                e.ExpectColumnValuesToBeInSet(column="item_id", value_set=item_ids),
                e.ExpectCompoundColumnsToBeUnique(column_list=["query_id", "item_id"]),
                e.ExpectColumnValuesToNotBeNull(column="label"),
                e.ExpectColumnValuesToBeBetween(column="label", min_value=1),
                e.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
            ],
        ),
    }


def _expectation_results(dataset: Dataset, config: ValidateConfig) -> list[CheckResult]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("dataset")
    results = []
    for file, (frame, id_columns, expectations) in _suites(dataset).items():
        batch = source.add_dataframe_asset(file).add_batch_definition_whole_dataframe("all rows")
        suite = context.suites.add(gx.ExpectationSuite(name=file, expectations=expectations))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=file, data=batch, suite=suite))
        outcome = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": id_columns},
        )
        for result in outcome.results:
            kwargs = result.expectation_config.kwargs
            examples = (result.result.get("unexpected_index_list") or [])[: config.example_rows]
            results.append(
                CheckResult(
                    file=file,
                    column=kwargs.get("column") or ",".join(kwargs.get("column_list", [])),
                    check=result.expectation_config.type,
                    success=bool(result.success),
                    unexpected_count=int(result.result.get("unexpected_count") or 0),
                    examples=[_plain(example) for example in examples],
                )
            )
    results.extend(_split_results(dataset))
    return results


def _split_results(dataset: Dataset) -> list[CheckResult]:
    """Training and evaluation both need queries: an empty train or test split is an error."""
    counts = dataset.qrels["split"].value_counts()
    return [
        CheckResult("qrels.parquet", "split", f"split_{split}_is_not_empty", bool(counts.get(split, 0) > 0))
        for split in ("train", "test")
    ]


def _image_results(dataset: Dataset, config: ValidateConfig) -> list[CheckResult]:
    from PIL import Image

    root = dataset.root.resolve()
    missing, undecodable, too_large = [], [], []
    for item_id, relative in zip(dataset.items["item_id"], dataset.items["image"]):
        if not isinstance(relative, str):
            continue  # a null path is reported by the suite
        path = (root / relative).resolve()
        if root not in path.parents or not path.is_file():
            missing.append({"item_id": item_id, "image": relative})
            continue
        try:
            with Image.open(path) as image:
                if image.width * image.height > config.max_image_pixels:
                    too_large.append({"item_id": item_id, "image": relative, "size": f"{image.width}x{image.height}"})
                    continue
                image.load()
        except Exception as error:  # PIL raises many types for a broken file
            undecodable.append({"item_id": item_id, "image": relative, "error": type(error).__name__})
    checks = {"image_file_exists": missing, "image_decodes": undecodable, "image_within_max_pixels": too_large}
    return [
        CheckResult("items.parquet", "image", check, not rows, len(rows), rows[: config.example_rows])
        for check, rows in checks.items()
    ]


def _plain(example: dict) -> dict:
    """JSON-friendly example row: numpy scalars to Python, NaN to None."""
    plain = {}
    for key, value in example.items():
        value = value.item() if hasattr(value, "item") else value
        plain[key] = None if value != value else value
    return plain
