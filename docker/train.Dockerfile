# syntax=docker/dockerfile:1
# Training / worker image (GPU). Build context: repo root.
# A plain slim Python base is enough: the torch wheels on PyPI bundle their own
# CUDA/cuDNN libraries (nvidia-* wheels), so only the host NVIDIA driver is needed.
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

COPY . .
# The pip cache mount keeps downloaded wheels (torch alone is GBs) across code-only rebuilds.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c constraints.txt ".[gpu,dask]" \
 && mkdir -p data outputs \
 && chown app:app /app data outputs

USER app
# A worker on the process pool `smar`: it runs the deployments of prefect.yaml in /app.
# Several GPUs: torchrun --nproc-per-node N -m smar train (train.batch_size is the global batch).
CMD ["prefect", "worker", "start", "--pool", "smar"]
