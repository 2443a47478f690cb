#!/usr/bin/env bash
# One-step set-up: a virtual environment in .venv with the project and its pinned dependencies.
#   bash scripts/setup.sh            CPU machine (laptop, CI): extras dev + cpu
#   EXTRAS=gpu bash scripts/setup.sh  GPU host (install torch's CUDA build first, see README)
# TORCH_INDEX=<url> makes pip take torch from that index (e.g. PyTorch's CPU wheel index, so a
# CPU-only Linux machine does not download the CUDA build); by default pip resolves
# torch==2.13.0 from its configured indexes and find-links.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed (bpy 4.5 and mediapipe 0.10.21 wheels are cp311)"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
# pip's exit status is kept; only its noise about local index folders is filtered out.
pip_q() { python -m pip -q "$@" 2> >(grep -v '^WARNING: Location' >&2); }
pip_q install --upgrade pip setuptools wheel
if [ -n "${TORCH_INDEX:-}" ]; then
  pip_q install torch==2.13.0 --index-url "$TORCH_INDEX"
else
  pip_q install torch==2.13.0
fi
pip_q install -e ".[${EXTRAS:-dev,cpu}]"
python -c "import gen3dface.backend, torch, mediapipe, zmq; print('gen3dface set up: torch', torch.__version__)"
