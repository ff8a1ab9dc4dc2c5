"""Helpers both `smar data import` formats share (`smar.data.import_table`, `smar.data.import_jd`
and the shared steps in `smar.data.importers`): ids as strings, labels, splits and error examples."""

from __future__ import annotations

from smar.core.contract import SPLITS
from smar.core.errors import DatasetError

EXAMPLES = 5


def _examples(values) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:EXAMPLES])
    return shown + (f" (and {len(values) - EXAMPLES} more)" if len(values) > EXAMPLES else "")


def _as_strings(series):
    """Values as pandas strings, nulls kept; integral floats (an id column with a gap, read as
    float) lose their ".0", and surrounding blanks are stripped."""
    from pandas.api import types

    if types.is_float_dtype(series.dtype):
        present = series.dropna()
        if len(present) and bool((present == present.round()).all()):
            series = series.astype("Int64")
    elif types.is_object_dtype(series.dtype):
        series = series.map(lambda v: v if v is None or isinstance(v, str) or v != v else str(v))
    return series.astype("str").str.strip()


def _ids(series, where: str, column: str, what: str, fix: str):
    """A required id or text column: strings, none null or blank."""
    values = _as_strings(series)
    blank = values.isna() | (values == "")
    if blank.any():
        rows = list(blank[blank].index[:EXAMPLES])
        raise DatasetError(
            f"{where}: column '{column}' ({what}) is empty in {int(blank.sum())} row(s), e.g. row(s) {_examples(rows)} "
            f"(counting from 0). Fix: {fix}"
        )
    return values.reset_index(drop=True)


def _unique(frame, column: str, where: str, source_column: str) -> None:
    duplicated = frame[column].duplicated(keep=False)
    if duplicated.any():
        values = sorted(frame.loc[duplicated, column].unique())
        raise DatasetError(
            f"{where}: column '{source_column}' ({column}) must be unique; {len(values)} value(s) repeat: "
            f"{_examples(values)}. "
            f"Fix: remove the duplicate rows or map {column} to a unique column."
        )


def _labels(series, where: str, column: str, label: str):
    import pandas as pd

    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() | (numbers < 0) | (numbers != numbers.round())
    if bad.any():
        examples = [series.iloc[i] for i in range(len(series)) if bad.iloc[i]]
        raise DatasetError(
            f"{where}: column '{column}' ({'click counts' if label == 'clicks' else 'graded labels'}) must hold "
            f"non-negative integers; "
            f"{int(bad.sum())} row(s) do not, e.g. {_examples(examples)}. Fix: clean the column or map "
            f"interactions.label to another one."
        )
    return numbers.astype("int64").reset_index(drop=True)


def _splits(series, where: str, column: str):
    values = _as_strings(series).str.lower()
    bad = ~values.isin(SPLITS)
    if bad.any():
        found = sorted({str(v) for v in values[bad]})
        raise DatasetError(
            f"{where}: column '{column}' (split) must be one of {', '.join(SPLITS)}; found {_examples(found)}. "
            f"Fix: rename the values, or unmap the column (--map interactions.split=) to split queries by hash."
        )
    return values.reset_index(drop=True)
