#!/usr/bin/env bash
# Build .venv-ptychi: pty-chi 2.2.0, the iterative comparator of bench/compare_ptychi.py.
#
# pty-chi is a benchmark comparator, not a dependency of PtychoPINN, so it lives in its own
# venv at the repo root (git-ignored). torch is pinned through a constraints file: unpinned,
# pty-chi pulls a multi-GB CUDA build; torch==2.13.0 resolves to the CPU wheel.
# Idempotent: an existing venv with ptychi 2.2.0 importable is left as it is.
#
#   nice -n 19 bash bench/ptychi_env.sh        # PYTHON=python3.11 VENV=.venv-ptychi by default
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-$ROOT/.venv-ptychi}"
PY="$VENV/bin/python"

if [[ -x "$PY" ]] && "$PY" -c 'import ptychi.api, sys; from importlib.metadata import version; sys.exit(version("ptychi") != "2.2.0")' 2>/dev/null; then
    echo "ptychi_env: $VENV already has ptychi 2.2.0"
    exit 0
fi

[[ -x "$PY" ]] || "$PYTHON" -m venv "$VENV"
CONSTRAINTS="$VENV/constraints.txt"
cat > "$CONSTRAINTS" <<'TXT'
torch==2.13.0
TXT
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install -c "$CONSTRAINTS" torch==2.13.0 ptychi==2.2.0 numpy scipy h5py

# pty-chi imports torchvision only for transforms.GaussianBlur; where the real package does
# not import (no wheel here matches this torch), replace it by the stand-in that
# bench/ptychi_runner.py carries (the runner also installs it in memory if needed).
if ! "$PY" -c 'import torchvision.transforms' >/dev/null 2>&1; then
    SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "ptychi_env: torchvision does not import; installing the GaussianBlur stand-in"
    "$PY" -m pip uninstall --yes torchvision >/dev/null 2>&1 || true
    rm -rf "$SITE/torchvision"
    "$PY" "$ROOT/bench/ptychi_runner.py" --write-torchvision-stub "$SITE"
fi
"$PY" -c 'import ptychi, torch; from importlib.metadata import version; print("ptychi", version("ptychi"), "torch", torch.__version__)'
