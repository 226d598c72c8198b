#!/usr/bin/env bash
# The GPU benchmark as one short command: both backends, N = 64 and 128, JSON in
# bench/results/. Runs on a CPU too (slowly); `bench/gpu.sh --smoke` is the tiny check.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi: CPU run"
"$PY" bench/gpu.py --backend pytorch --compile --bf16 "$@"
"$PY" bench/gpu.py --backend tensorflow "$@"
