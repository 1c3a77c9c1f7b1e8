#!/usr/bin/env bash
# gpu-prepare.sh — run here (where npm install worked) before a GPU session: packs what scripts/gpu-check.sh needs
# that the GPU machine lacks (it has nvcc, CMake, PyTorch and transformers, but no Node and no node_modules):
#   .devtools/node.xz               this machine's Node binary (xz -9), unpacked there into a temporary folder
#   .devtools/node-api-include/     Node-API headers (node-api-headers), to build the addon there with CUDA linked
#   .devtools/node-addon-api/       napi.h and friends (node-addon-api)
#   dist/                           the compiled TypeScript (npm run build), for src/bench/cuda_check.ts
# Both .devtools/ and dist/ are git-ignored (≈ 25 MB together): carry them with the working tree to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .devtools
node_bin="$(command -v node)"
# xz -9 of a 100 MB binary takes minutes on a busy machine: only when the binary changed
if [ ! -f .devtools/node.xz ] || [ "$node_bin" -nt .devtools/node.xz ]; then
  xz -9 -T0 -c "$node_bin" > .devtools/node.xz.tmp && mv .devtools/node.xz.tmp .devtools/node.xz
fi
rm -rf .devtools/node-api-include .devtools/node-addon-api
# node_api.h where scripts/build-native.js looks for it: the node-api-headers package, else the system's Node headers
napi=""
for d in "$(node -p "try { require('node-api-headers').include_dir } catch { '' }")" \
  "$(dirname "$(readlink -f "$node_bin")")/../include/node" /usr/include/node /usr/local/include/node; do
  if [ -n "$d" ] && [ -f "$d/node_api.h" ]; then napi="$d"; break; fi
done
[ -n "$napi" ] || { echo "gpu-prepare: node_api.h not found (npm install, or the Node development headers)" >&2; exit 1; }
mkdir -p .devtools/node-api-include  # the four Node-API headers only (the system folder also holds V8's, 50 MB)
cp -L "$napi"/{node_api.h,node_api_types.h,js_native_api.h,js_native_api_types.h} .devtools/node-api-include/
mkdir -p .devtools/node-addon-api
addon_api="$(node -p "require('path').resolve(require('node-addon-api').include_dir)")"
cp "$addon_api"/*.h .devtools/node-addon-api/
npm run --silent build
echo "gpu-prepare: $(du -sh .devtools | cut -f1) in .devtools (node $(node --version)), dist/ $(du -sh dist | cut -f1)"
