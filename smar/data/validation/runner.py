"""Running the suites through Great Expectations and building its HTML data docs.

One ephemeral GX context runs the suites; its in-memory validation results are rendered by
`build_data_docs` to a filesystem site added with `add_data_docs_site`, in the folder the caller
gives (a scratch folder that replaces `data_docs/` only when complete). Each GX result becomes a
`CheckResult`, with the example rows GX quotes and the fix from the expectation's meta.
"""

from __future__ import annotations

import logging
from pathlib import Path

from smar.core.config import SmarConfig
from smar.core.progress import Progress
from smar.data.validation.report import CheckResult, plain_example
from smar.data.validation.suites import Suite


def run_suites(suites: list[Suite], config: SmarConfig, docs_dir: Path) -> list[CheckResult]:
    """Run every suite in one ephemeral GX context and build its data docs into `docs_dir`."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX sets this logger to INFO on import; it then logs each ephemeral context's unused docs dir.
    logging.getLogger(ProgressBarsConfig.__module__).setLevel(logging.WARNING)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # Validation results of an ephemeral context are kept in memory; build_data_docs renders them
    # (and the suites) to a filesystem site of our own.
    context.add_data_docs_site(
        "smar",
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            # Result pages list every expectation with its outcome; suite pages would repeat them.
            "site_section_builders": {"expectations": "0", "profiling": "0"},
        },
    )
    source = context.data_sources.add_pandas("dataset")
    results = []
    with Progress("validate", len(suites), "file") as progress:
        for suite in suites:
            batch = source.add_dataframe_asset(suite.file).add_batch_definition_whole_dataframe("all rows")
            gx_suite = context.suites.add(gx.ExpectationSuite(name=suite.file, expectations=suite.expectations))
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=suite.file, data=batch, suite=gx_suite)
            )
            outcome = definition.run(
                batch_parameters={"dataframe": suite.frame},
                # SUMMARY: counts plus the first failing rows (COMPLETE would list every failing row,
                # in the report and in the HTML, and costs more even when nothing fails).
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": max(20, config.validate_.example_rows),
                    "unexpected_index_column_names": suite.index_columns,
                },
            )
            results.extend(_check_result(suite, result, config.validate_.example_rows) for result in outcome.results)
            progress.advance()
    context.build_data_docs(site_names=["smar"])
    return results


def _check_result(suite: Suite, result, example_rows: int) -> CheckResult:
    meta = result.expectation_config.meta or {}
    success = bool(result.success)
    column = meta.get("column", "")
    detail = meta.get("detail")
    examples: list = []
    if not success:
        errors = _exception_messages(result.exception_info)
        if errors:
            examples = [f"the check could not run: {'; '.join(errors)}"]
        for entry in (result.result.get("partial_unexpected_index_list") or [])[:example_rows]:
            example = {key: entry.get(key) for key in suite.id_columns}
            example.update({key: entry[key] for key in column.split(",") if key in entry and key not in example})
            if detail:
                example["problem"] = entry.get(detail)
            examples.append(plain_example(example))
        if not examples:
            examples = list(meta.get("examples") or [])
    return CheckResult(
        file=meta.get("file", suite.file),
        column=column,
        check=meta.get("check") or result.expectation_config.type,
        success=success,
        # a count of rows only where GX checked rows (not for table or distinct-value checks)
        unexpected_count=int(result.result.get("unexpected_count") or 0)
        if "partial_unexpected_index_list" in result.result
        else 0,
        examples=examples,
        fix=meta.get("fix", ""),
    )


def _exception_messages(info) -> list[str]:
    """Messages of exceptions GX caught while checking ({...} or {metric id: {...}})."""
    if not isinstance(info, dict):
        return []
    if info.get("raised_exception"):
        return [str(info.get("exception_message"))]
    return sorted({message for value in info.values() for message in _exception_messages(value)})
