"""What validation tells the user: one `CheckResult` per check, the report that `train` requires,
and `ValidationFailed`, the error that lists every failed check (file, column, example rows, fix)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from smar.core.errors import SmarError
from smar.core.paths import Paths, require
from smar.data.validation.row_checks import is_missing


@dataclass
class CheckResult:
    file: str
    column: str
    check: str
    success: bool
    unexpected_count: int = 0
    examples: list = field(default_factory=list)
    fix: str = ""

    def describe(self) -> str:
        failed = f"{self.unexpected_count} row(s) fail" if self.unexpected_count else "failed"
        examples = f", e.g. {' | '.join(map(_example_text, self.examples))}" if self.examples else ""
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.file} [{self.column}] {self.check}: {failed}{examples}{fix}"


class ValidationFailed(SmarError):
    def __init__(self, data_dir: Path, failures: list[CheckResult]):
        self.failures = failures
        lines = "\n".join(f"  - {failure.describe()}" for failure in failures)
        super().__init__(
            f"{data_dir}: dataset failed validation ({len(failures)} check(s)); nothing downstream ran.\n{lines}\n"
            "Fix the listed rows in the source data (or re-run the importer) and run again."
        )


def require_passed(paths: Paths) -> None:
    """Training starts only from a dataset whose latest validation passed."""
    report = json.loads(require(paths.validation.report, "validate").read_text())
    if not report.get("success"):
        raise ValidationFailed(paths.data, [CheckResult(**check) for check in report["checks"] if not check["success"]])


def plain_example(example: dict) -> dict:
    """JSON-friendly example row: numpy scalars to Python, NaN to None."""
    plain = {}
    for key, value in example.items():
        value = value.item() if hasattr(value, "item") else value
        plain[key] = None if is_missing(value) else value
    return plain


def _example_text(example) -> str:
    """row=3 item_id=I0000003 title='  ': problem"""
    if not isinstance(example, dict):
        return str(example)
    fields = " ".join(f"{key}={_value_text(value)}" for key, value in example.items() if key != "problem")
    return f"{fields}: {example['problem']}" if example.get("problem") else fields


def _value_text(value) -> str:
    if isinstance(value, str) and value and value == value.strip() and value.isprintable():
        return value if len(value) <= 60 else value[:57] + "..."
    return _short(value, 60)


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
