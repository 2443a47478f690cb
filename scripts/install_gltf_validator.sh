#!/usr/bin/env bash
# Installs Khronos' glTF-Validator (npm package `gltf-validator`) into tools/node (git-ignored),
# where tests and scripts/validate_gltf.mjs look for it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null 2>&1 || { echo "npm not found: install Node.js to validate GLB files" >&2; exit 1; }
mkdir -p tools/node
[ -f tools/node/package.json ] || echo '{"private": true}' > tools/node/package.json
npm install --prefix tools/node --no-audit --no-fund --silent gltf-validator@2.0.0-dev.3.10
