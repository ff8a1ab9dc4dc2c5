"""Step 1, validate: the dataset against Great Expectations suites.

Plain Python computes what GX cannot see in a column (image files, UTF-8, invisible and control
characters, value types, the features array); each such per-row result becomes a derived column that a GX expectation
asserts, so every check runs through GX, lands in the report and in the HTML data docs.

A failure raises `ValidationFailed` listing every failed check, one line each: the file, the
column, example rows (row number and ids) and a "fix: ..." hint. The report
(`outputs/validation/report.json`) and the data docs (`outputs/validation/data_docs/`) are
written either way, with `success` false on failure; `train` refuses to start unless the report
says the dataset passed. A structural problem (missing file or column, unreadable Parquet or
.npy) raises `DatasetError` before any check and leaves neither report nor data docs.

What is accepted (see also docs/data.md, "Data contract"):
- ids (`item_id`, `query_id`) and text (`title`, `category`, `brand`, `text`) must be strings:
  integers or floats are rejected, also when they are consistent across files. Text must be
  valid UTF-8 without U+FFFD replacement characters or lone surrogates; a binary Parquet column
  of valid UTF-8 (as Spark writes) is read as text by `load_dataset`, its undecodable values
  stay bytes and fail here.
- `title` and query `text` must show something: not null, not empty, not only whitespace
  (no-break spaces U+00A0, U+202F, U+2007 included) and invisible characters: format characters
  (Unicode category Cf: zero-width spaces and joiners U+200B-U+200D, word joiner U+2060, BOM
  U+FEFF, soft hyphen, ...), controls, Unicode's other default-ignorable code points (Hangul
  fillers, variation selectors, ...) and the braille blank U+2800. Next to visible text they are
  accepted.
- text (`title`, `category`, `brand`, `text`) holds no control characters (category Cc): NUL
  and the other C0 controls, DEL and the C1 controls U+0080-U+009F (what cp1252 punctuation read
  as latin-1 becomes) are rejected; tab, newline and carriage return are accepted: they are
  whitespace, which the tokenizer splits on like a space, and exports of multi-line text carry them.
- `label` must be a whole number >= 1: integer columns, or floats with integral values (a float
  column is what pandas makes of integers next to a missing value); strings, booleans, NaN,
  infinities and fractions are rejected.
- `split` in train/valid/test (never null: a row without a split would silently drop out of
  every split), one split per query; train and test need at least one query.
  valid may be empty (training then reports valid recall as NaN) unless `evaluate.split` is
  valid, because evaluation and the registration gate would have nothing to score.
- `image` may be null only when the dataset carries `image_features.npy` (float32,
  [num_items, F] or [num_items, T, F], rows in items.parquet order, all finite); a non-null
  path must name a non-empty file inside the dataset that decodes, with at most
  `validate.max_image_pixels` pixels (and below PIL's decompression-bomb limit).
- `image_url` (optional) is null or an absolute http(s) URL: the search page links to it.
- `dataset.json` may be missing; when present it must be one UTF-8 JSON object (training reads
  its name and version when it starts).

The parts: `suites` (what is checked in each file), `row_checks` (the per-row checks computed in
Python and handed to the suites), `runner` (running GX and building the data docs) and `report`
(the report, and the error that lists the failed checks).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

from smar.core.config import SmarConfig
from smar.core.paths import Paths, replace_on_success, write_text_atomic
from smar.core.tracking import Tracker
from smar.data.dataset import load_dataset, load_image_features
from smar.data.validation import runner
from smar.data.validation.report import CheckResult, ValidationFailed, require_passed
from smar.data.validation.suites import build_suites

__all__ = ["CheckResult", "ValidationFailed", "require_passed", "validate"]


def validate(config: SmarConfig, paths: Paths, tracker: Tracker | None = None) -> dict:
    """Validate `paths.data`; write the report to `paths.validation.report`, the HTML data docs to
    `paths.validation.data_docs`, and return the report."""
    docs = paths.validation.data_docs
    # The report and the data docs only ever describe the data as it is now.
    paths.validation.report.unlink(missing_ok=True)
    shutil.rmtree(docs, ignore_errors=True)
    dataset = load_dataset(paths.data)
    features = load_image_features(paths.data) if dataset.image_features_file else None
    suites = build_suites(dataset, features, config)
    with replace_on_success(docs) as scratch:  # a crash never leaves half-written docs
        scratch.chmod(0o755)  # mkdtemp makes it private; the docs are meant to be browsed
        results = runner.run_suites(suites, config, scratch)
    failures = [r for r in results if not r.success]
    report = {
        "data": str(paths.data),
        "success": not failures,
        "counts": {"items": len(dataset.items), "queries": len(dataset.queries), "qrels": len(dataset.qrels)}
        | ({"image_features": list(features.shape)} if features is not None else {}),
        "data_docs": str(docs / "index.html"),
        "checks": [asdict(r) for r in results],
    }
    write_text_atomic(paths.validation.report, json.dumps(report, indent=2) + "\n")
    if failures:
        raise ValidationFailed(paths.data, failures)
    return report
