#!/usr/bin/env bash
# README's first command: set up (.venv, install) and make a head from a real portrait that
# ships inside scikit-image (skimage.data.astronaut(), a public-domain NASA photo), writing
# out/astronaut.glb and its sidecar out/astronaut.sidecar.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
# The ICT-FaceKit head model (full head, 53 ARKit shapes): fetched into the user data folder
# when this machine is online. Offline, the run still works, on mediapipe's front-of-face mesh,
# and says so; `gen3dface assets fetch --from ZIP` converts a copy downloaded elsewhere.
installed=$(.venv/bin/gen3dface assets info --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["selected"] is not None)')
if [ "$installed" != "True" ]; then
  timeout 600 .venv/bin/gen3dface assets fetch || echo "note: ICT-FaceKit could not be fetched (offline?); using the fallback head"
fi
.venv/bin/python - <<'PY'
from PIL import Image
from skimage import data
Image.fromarray(data.astronaut()).save("out/astronaut.png")
PY
.venv/bin/gen3dface run out/astronaut.png -o out/astronaut.glb --json out/astronaut.run.json
echo "wrote out/astronaut.glb (open it in Blender: File > Import > glTF 2.0)"
