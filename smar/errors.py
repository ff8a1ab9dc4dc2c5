"""Errors a user can cause and fix. The CLI prints their message (no traceback) and exits 1."""


class SmarError(Exception):
    """Base class: the message names the file, the field and the fix."""


class ConfigError(SmarError):
    """params.yaml is missing or invalid."""


class DatasetError(SmarError):
    """A dataset file is missing or malformed."""


class MissingInputError(SmarError):
    """A step ran before the step that writes its input."""
