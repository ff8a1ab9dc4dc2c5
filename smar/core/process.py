"""The set-up of a smar process: the environment the libraries read, warnings and logging.

Every entry point calls `setup()` once, before it imports Prefect or MLflow: the `smar`
command, the Prefect entry point (`flows/pipeline.py`), the tests and the benchmarks. A
variable already set in the environment wins over these defaults, so a user can still turn
telemetry on, use the Hugging Face hub, or point Prefect at a server.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

ENVIRONMENT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # else the server logs failed telemetry calls every 10 minutes
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # a fresh PREFECT_HOME migrates its database for ~20 s
    "PREFECT_LOGGING_EXTRA_LOGGERS": "smar",  # smar's log lines in the flow run's logs in the UI
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",  # smar logs outside a flow run stay local
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # one bar per artifact file floods a worker's log
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",  # weights come from the packages that ship them; set 0 to opt into the hub
}
QUIET_LOGGERS = ("great_expectations", "alembic", "httpx", "urllib3", "faiss")


def setup(log_level: int = logging.INFO) -> None:
    """Environment defaults, the warnings smar silences, and log lines on stderr."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if os.environ.get("PREFECT_HOME"):  # Prefect creates its home, but not missing parents
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings(
        "ignore", message=".*input example", category=UserWarning
    )  # MLflow: the signature is explicit
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
