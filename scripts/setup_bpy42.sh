#!/usr/bin/env bash
# A second environment, .venv-bpy42, with the bpy 4.2 LTS wheel (the oldest Blender the
# extension supports), so the Blender tests also run against 4.2: tests/conftest.py finds it
# and runs every `blender_python` test on both. Only bpy, pyzmq and numpy are installed there;
# the project is linked in without its backend dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv-bpy42/bin/python ] || "$PY" -m venv .venv-bpy42
pip_q() { .venv-bpy42/bin/python -m pip -q "$@" 2> >(grep -v '^WARNING: Location' >&2); }
pip_q install "bpy==4.2.*" "numpy<2" "pyzmq>=26" pytest
pip_q install --no-deps -e .
.venv-bpy42/bin/python -c "import bpy; print('bpy', bpy.app.version_string, 'in .venv-bpy42')"
