"""Errors a user can cause and fix. The CLI prints their message (no traceback) and exits 1."""


class SmarError(Exception):
    """Base class: the message names the file, the field and the fix."""


class ConfigError(SmarError):
    """params.yaml is missing or invalid."""


class DatasetError(SmarError):
    """A dataset file is missing or malformed."""


class MissingInputError(SmarError):
    """A step ran before the step that writes its input."""


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server did not answer. Not a SmarError: nothing for the user to fix in
    the data or settings, so the pipeline's tasks retry it (smar.pipeline.flow.not_a_user_error)."""


def describe_invalid(error) -> str:
    """One line per field of a pydantic ValidationError: `  - section.field: message (got value)`."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        given = problem.get("input")
        value = f" (got {given!r})" if given is not None and not isinstance(given, dict) else ""
        lines.append(f"  - {field}: {problem['msg'].removeprefix('Value error, ')}{value}")
    return "\n".join(lines)
