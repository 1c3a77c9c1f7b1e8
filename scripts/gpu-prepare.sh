#!/usr/bin/env bash
# gpu-prepare.sh — run here (where npm install worked) before a GPU session: packs what scripts/gpu-check.sh needs
# that the GPU machine lacks (it has nvcc, CMake, PyTorch and transformers, but no Node and no node_modules):
#   .devtools/node.xz               this machine's Node binary (xz -9), unpacked there into a temporary folder
#   .devtools/node-api-include/     Node-API headers (node-api-headers), to build the addon there with CUDA linked
#   .devtools/node-addon-api/       napi.h and friends (node-addon-api)
#   dist/                           the compiled TypeScript (npm run build), for src/bench/cuda_check.ts
# Both .devtools/ and dist/ are git-ignored: carry them with the working tree to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .devtools
node_bin="$(command -v node)"
xz -9 -T0 -c "$node_bin" > .devtools/node.xz.tmp && mv .devtools/node.xz.tmp .devtools/node.xz
rm -rf .devtools/node-api-include .devtools/node-addon-api
cp -r "$(node -p "require('node-api-headers').include_dir")" .devtools/node-api-include
mkdir -p .devtools/node-addon-api
addon_api="$(node -p "require('path').resolve(require('node-addon-api').include_dir)")"
cp "$addon_api"/*.h .devtools/node-addon-api/
npm run --silent build
echo "gpu-prepare: $(du -sh .devtools | cut -f1) in .devtools (node $(node --version)), dist/ $(du -sh dist | cut -f1)"
