# syntax=docker/dockerfile:1
# CPU serving image; compose also reuses it for the MLflow and Prefect servers.
# Build context: repo root.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DVC_NO_ANALYTICS=1 \
    HF_HUB_OFFLINE=1

RUN useradd --create-home --uid 1000 app
WORKDIR /app

# CPU torch first, from the PyTorch CPU index (PyPI's build pulls ~GBs of CUDA wheels).
# The version comes from constraints.txt so the pin lives in one place; the later
# `torch==X` constraint is satisfied by `X+cpu`, so pip keeps this build.
COPY constraints.txt .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url https://download.pytorch.org/whl/cpu "$(grep -oE '^torch==[^ ;#]+' constraints.txt)"

# What the install needs, and nothing else: a serving host needs the tracking server, not the repository.
COPY pyproject.toml README.md ./
COPY smar smar
COPY flows flows
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c constraints.txt ".[postgres]"

# Named volumes copy this ownership on first mount, so the non-root servers can write state.
RUN mkdir -p /mlflow/artifacts /prefect && chown -R app:app /mlflow /prefect

USER app
EXPOSE 8080
# slim has no curl; urlopen raises (exit 1) on connection errors and non-2xx replies.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=3)"]
CMD ["smar", "serve", "--host", "0.0.0.0", "--port", "8080"]
