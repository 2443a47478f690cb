#!/usr/bin/env bash
# README's first command: set up (.venv, install) and make a head from a real portrait that
# ships inside scikit-image (skimage.data.astronaut(), a public-domain NASA photo), writing
# out/astronaut.glb and its sidecar out/astronaut.sidecar.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/python - <<'PY'
from PIL import Image
from skimage import data
Image.fromarray(data.astronaut()).save("out/astronaut.png")
PY
.venv/bin/gen3dface run out/astronaut.png -o out/astronaut.glb --json out/astronaut.run.json
echo "wrote out/astronaut.glb (open it in Blender: File > Import > glTF 2.0)"
