#!/usr/bin/env bash
# Set up the likeness benchmark (scripts/bench_likeness.py); dev/bench only, never runtime:
# 1. the judge into .venv: pyproject's `bench` extra (dlib-bin, face_recognition_models) and
#    face_recognition==1.3.0 with --no-deps (its `dlib` requirement would build from source;
#    dlib-bin provides the same module), checked against numpy<2;
# 2. the eos peer's own venv (default .venv-peer, or PEER_VENV=...), made by the peer's
#    setup.sh (../shared/tools/peer_eos, or GEN3DFACE_PEER_EOS=DIR). The peer's Surrey Face
#    Model is non-commercial: benchmark only.
#   bash scripts/setup_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run scripts/setup.sh first" >&2; exit 2; }
pip_q() { "$PY" -m pip -q "$@" 2> >(grep -v '^WARNING: Location' >&2); }
mapfile -t REQS < <("$PY" - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["bench"]))
PY
)
pip_q install "${REQS[@]}" "numpy<2"
pip_q install --no-deps "face_recognition==1.3.0"
"$PY" - <<'PY'
import sys
sys.path.insert(0, "scripts")
import numpy, dlib
from bench_likeness import import_face_recognition
import_face_recognition()
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__}: bpy and mediapipe need numpy<2"
print(f"likeness judge ready: dlib {dlib.__version__}, numpy {numpy.__version__}")
PY
PEER=${GEN3DFACE_PEER_EOS:-../shared/tools/peer_eos}
if [ -f "$PEER/setup.sh" ]; then
  bash "$PEER/setup.sh" "${PEER_VENV:-.venv-peer}"
else
  echo "note: no eos peer at $PEER (set GEN3DFACE_PEER_EOS): bench_likeness.py needs it" >&2
fi
