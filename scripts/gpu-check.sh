#!/usr/bin/env bash
# gpu-check.sh — the one script for a GPU machine (nvcc, CMake, PyTorch, transformers; no npm or network needed).
#
#   bash scripts/gpu-prepare.sh                       (here, before: Node binary, Node-API headers, dist/ → .devtools)
#   OUT=/some/dir bash scripts/gpu-check.sh           (there; OUT defaults to ./gpu-out)
#   OUT=/some/dir bash scripts/gpu-check.sh --dry-run (anywhere: the shell logic, every GPU step skipped)
#   ONLY="cache cache-memcheck" OUT=/some/dir bash scripts/gpu-check.sh
#                                                     (the builds and the named steps only; without e2e in ONLY the
#                                                     addon is not built and Node is not needed)
#
# Builds native/cuda and the Node addon with it (docs/cuda.md), runs the kernel test harness, the decode / MoE-layer
# benchmark, the device expert cache's test and timing (issue 13), the PyTorch peer of the MoE layer on the same card, the addon end to end (`device: 'cuda'` against the
# CPU runtime on the tiny plan, decode at the DS-MoE-1B / 6B shapes: src/bench/cuda_check.ts), the transformers
# checks (scripts/make_hf_fixtures.py: fixtures made by transformers into $OUT/hf, our exports loaded and compared),
# and last the harness under compute-sanitizer (memcheck on the quick subset, racecheck on the expert kernels).
# Every log lands in $OUT; $OUT/summary.txt lists each step with its exit status and time, $OUT/results.jsonl holds
# every figure (one JSON object per line). The whole run is held under 8 minutes: each step's timeout is cut to
# what is left. Exit status: 0 when every step passed, 1 otherwise (the logs say which; a missing tool is a failure).
set -u
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
ONLY="${ONLY:-}"

OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUILD="${BUILD:-native/cuda/build}"
ARCHS="${DSMOE_CUDA_ARCHS:-90a-real}"  # the H200 only: half the compile time of the default list
START=$(date +%s)
DEADLINE=$((START + 470))
STATUS=0
: > "$OUT/summary.txt"

say() { echo "$*" | tee -a "$OUT/summary.txt"; }

# with ONLY set, the build steps and the steps it names run; the others are skipped (and count as passed)
wanted() {
  [ -z "$ONLY" ] && return 0
  case "$1" in configure* | build* | nvcc-build) return 0 ;; esac
  [[ " $ONLY " == *" $1 "* ]]
}

# step NAME CAP_SECONDS CMD...: runs CMD with stdout+stderr in $OUT/NAME.log, under min(CAP, time left - 10 s)
step() {
  local name=$1 cap=$2
  shift 2
  if ! wanted "$name"; then
    say "$(printf '%-10s %-22s %s' "$name" "SKIP (not in ONLY)" "$*")"
    return 0
  fi
  local left=$((DEADLINE - $(date +%s) - 10))
  if [ "$left" -lt 20 ]; then
    say "SKIP $name (out of time)"
    STATUS=1
    return 1
  fi
  if [ "$DRY" = 1 ] && [ "$name" != e2e ] && [ "$name" != hf ]; then
    say "$(printf '%-10s %-22s %s' "$name" "SKIP (dry run)" "$*")"
    return 0
  fi
  local limit=$((cap < left ? cap : left))
  local t0
  t0=$(date +%s)
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local verdict=ok
  [ "$rc" -eq 0 ] || verdict=FAIL
  [ "$rc" -eq 124 ] && verdict="FAIL (timeout ${limit}s)"
  say "$(printf '%-10s %-22s rc=%-3s %4ss  %s' "$name" "$verdict" "$rc" "$(($(date +%s) - t0))" "$*")"
  [ "$rc" -eq 0 ] || STATUS=1
  return "$rc"
}

{
  date -u
  nvidia-smi || true
  nvcc --version || true
  cmake --version | head -1 || true
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' || true
} > "$OUT/machine.txt" 2>&1

# Node for the addon's end-to-end step: on PATH, or the binary scripts/gpu-prepare.sh packed into .devtools/
NODE="$(command -v node || true)"
if [ -z "$NODE" ] && [ -f .devtools/node.xz ]; then
  NODE="$(mktemp -d)/node"
  xz -dc .devtools/node.xz > "$NODE" && chmod +x "$NODE" || NODE=""
fi
NAPI=""
for d in node_modules/node-api-headers/include .devtools/node-api-include; do [ -f "$d/node_api.h" ] && NAPI="$(pwd)/$d" && break; done
NADDON=""
for d in node_modules/node-addon-api .devtools/node-addon-api; do [ -f "$d/napi.h" ] && NADDON="$(pwd)/$d" && break; done
WITH_NODE=0
if ! wanted e2e; then
  say "node       not needed (ONLY=$ONLY): native/cuda alone is built"
elif [ -n "$NODE" ] && [ -n "$NAPI" ] && [ -n "$NADDON" ] && [ -f dist/bench/cuda_check.js ]; then
  WITH_NODE=1
  echo "node $("$NODE" --version)" >> "$OUT/machine.txt"
else
  say "FAIL node    (Node, the Node-API headers or dist/bench/cuda_check.js missing: run scripts/gpu-prepare.sh first)"
  STATUS=1
fi

SAN="$(command -v compute-sanitizer || true)"
[ -n "$SAN" ] || SAN=/usr/local/cuda/bin/compute-sanitizer

# plain nvcc build of the same two binaries, for a machine whose CMake is too old or fails to configure
nvcc_build() {
  local src=native/cuda flags=(-O3 -std=c++17 -lineinfo --expt-relaxed-constexpr -cudart static --threads 0
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=compute_90)
  local lib=("$src"/runtime.cu "$src"/norm.cu "$src"/rope.cu "$src"/linear.cu "$src"/attention.cu "$src"/router.cu
    "$src"/grouping.cu "$src"/moe_gemv.cu "$src"/moe_gemm.cu "$src"/moe.cu "$src"/expert_cache.cu "$src"/sampling.cu)
  mkdir -p "$BUILD"
  nvcc "${flags[@]}" -I"$src" "${lib[@]}" "$src"/test_main.cpp "$src"/reference.cpp "$src"/../src/kernels/sampling.cpp \
    -o "$BUILD/dsmoe_cuda_test" &
  local p1=$!
  nvcc "${flags[@]}" -I"$src" "${lib[@]}" "$src"/expert_cache_test.cu -o "$BUILD/dsmoe_cuda_expert_cache_test" &
  local p3=$!
  nvcc "${flags[@]}" -I"$src" "${lib[@]}" "$src"/bench_main.cu -o "$BUILD/dsmoe_cuda_bench"
  local r2=$?
  wait "$p3" || r2=1
  wait "$p1" && return "$r2"
}

built=0
if [ "$WITH_NODE" = 1 ]; then
  # one build: the addon with CUDA linked (native/build, where dist/runtime/native.js loads it) plus the harness and
  # the benchmark in native/build/cuda
  BUILD=native/build/cuda
  if step configure 60 cmake -S native -B native/build -DCMAKE_BUILD_TYPE=Release -DDSMOE_CUDA=ON -DDSMOE_CUDA_TOOLS=ON \
       "-DCMAKE_CUDA_ARCHITECTURES=$ARCHS" "-DNODE_API_INCLUDE=$NAPI" "-DNODE_ADDON_API_INCLUDE=$NADDON" &&
     step build 240 cmake --build native/build -j "$(nproc)"; then
    built=1
  fi
fi
if [ "$built" = 0 ]; then
  BUILD=native/cuda/build
  if step configure-cuda 60 cmake -S native/cuda -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$ARCHS" &&
     step build-cuda 240 cmake --build "$BUILD" -j "$(nproc)"; then
    built=2
  elif export -f nvcc_build && export BUILD && step nvcc-build 300 bash -c nvcc_build; then
    built=2
  fi
fi
VECTORS="$(pwd)/test/fixtures/sampler_vectors.json"  # the sampler contract's shared vectors (docs/design.md §10)
if [ "$built" != 0 ]; then
  step test 120 "$BUILD/dsmoe_cuda_test" --vectors "$VECTORS"
  step cache 150 "$BUILD/dsmoe_cuda_expert_cache_test"
  step bench 90 "$BUILD/dsmoe_cuda_bench"
  step peer 120 python3 native/cuda/peer_torch.py
fi
# the addon end to end: needs the addon build above (a dry run uses whatever addon is built here, CPU side only)
if [ "$built" = 1 ] || { [ "$DRY" = 1 ] && [ "$WITH_NODE" = 1 ]; }; then
  E2E_FLAGS=(--require-cuda)
  [ "$DRY" = 1 ] && E2E_FLAGS=(--quick)
  step e2e 150 "$NODE" dist/bench/cuda_check.js --dir "$(mktemp -d)" "${E2E_FLAGS[@]}"
elif [ "$built" = 2 ] && wanted e2e; then
  say "FAIL e2e     (the addon was not built: see configure.log / build.log)"
  STATUS=1
fi
# transformers: fixtures it makes (into $OUT/hf, to be committed) and our exports loaded and compared
if [ "$DRY" = 1 ]; then
  python3 -m py_compile scripts/make_hf_fixtures.py native/cuda/peer_torch.py && say "hf         python syntax ok (dry run)" ||
    { say "FAIL hf    python syntax"; STATUS=1; }
  if python3 -c 'import transformers' 2>/dev/null; then step hf 120 python3 scripts/make_hf_fixtures.py --out "$OUT/hf"; fi
else
  step hf 120 python3 scripts/make_hf_fixtures.py --out "$OUT/hf"
fi
if [ "$built" != 0 ]; then
  if [ "$DRY" = 1 ]; then
    say "SKIP sanitizers (dry run)"
  elif [ -x "$SAN" ]; then
    step memcheck 120 "$SAN" --tool memcheck --error-exitcode 3 "$BUILD/dsmoe_cuda_test" --quick --vectors "$VECTORS"
    step racecheck 60 "$SAN" --tool racecheck --error-exitcode 3 "$BUILD/dsmoe_cuda_test" --quick --filter experts
    step cache-memcheck 120 "$SAN" --tool memcheck --error-exitcode 3 "$BUILD/dsmoe_cuda_expert_cache_test" --quick
  else
    say "SKIP sanitizers (compute-sanitizer not found)"
    STATUS=1
  fi
fi

# every JSON figure in one file, then the targets of issues 7 and 20 side by side
cat "$OUT"/bench.log "$OUT"/cache.log "$OUT"/peer.log "$OUT"/e2e.log 2>/dev/null | grep '^{' > "$OUT/results.jsonl" || true
python3 - "$OUT/results.jsonl" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def find(bench, **kw):
    return [r for r in rows if r.get("bench") == bench and all(r.get(a) == b for a, b in kw.items())]
for r in find("decode_b1"):
    print(f"decode b1 k={r['k']} pdl={r.get('pdl')}: {r['ms_per_token']:.3f} ms/token, {r['weight_gbs']:.0f} GB/s weights = "
          f"{100 * r['fraction_of_d2d']:.1f}% of d2d {r['d2d_gbs']:.0f} GB/s on {r['card']} (target >= 70% for k=13)")
for r in find("pcie_htod"):
    print(f"pcie host->device (pinned, cudaMemcpyAsync 256 MiB): {r['gbs']:.1f} GB/s on {r['card']}")
for r in find("expert_cache_decode"):
    if r["mode"] == "resident":
        print(f"expert cache decode b1 ({r['layers']} MoE layers, {r['experts']} x d{r['d']}/I{r['I']}, k {r['k']}): "
              f"resident {r['tok_s']:.1f} tok/s")
    else:
        print(f"expert cache decode b1 {r['mode']} ({r['slots']} slots): {r['tok_s']:.1f} tok/s = "
              f"{r['vs_resident']:.3f} x resident, hit rate {r['hit_rate']:.3f}, recall {r['recall']}, "
              f"{r['gb_copied_per_token']:.3f} GB/token copied, PCIe bound {r['pcie_bound_tok_s']:.1f} tok/s")
for r in find("decode_b1_speedup"):
    print(f"decode dense/sparse speedup {r['speedup']:.2f}x (ideal {r['ideal']:.2f}x) on {r['card']}")
for k in (13, 32):
    ours = find("moe_layer", k=k)
    peer = find("moe_layer_torch_best", k=k)
    if ours:
        o = ours[0]
        line = f"moe layer 64x512 k={k}: dsmoe {o['ms_best']:.3f} ms ({o['tflops']} TFLOP/s)"
        if peer:
            p = peer[0]
            line += f" vs torch {p['impl']} {p['ms_best']:.3f} ms -> {p['ms_best'] / o['ms_best']:.2f}x (target >= 1)"
        print(line + f" on {o['card']}")
for r in find("moe_layer_speedup"):
    print(f"moe layer dense/sparse speedup {r['speedup']:.2f}x (ideal {r['ideal']:.2f}x) on {r['card']}")
for r in find("e2e_loss"):
    if "cuda_loss" in r:
        target = f" (target < {r['target']})" if r.get("target") else ""
        print(f"e2e loss {r['plan']} {r['mode']}: cuda {r['cuda_loss']:.6f} vs cpu {r['cpu_loss']:.6f}, "
              f"relative {r['relative']:.2e}{target}; logits max relative {r['logits_relative']:.2e}")
d2d = [r["d2d_gbs"] for r in find("decode_b1") if "d2d_gbs" in r]
for r in find("addon_decode_b1"):
    frac = f" = {100 * r['weight_gbs'] / d2d[0]:.1f}% of d2d" if d2d else ""
    print(f"addon decode b1 {r['shape']} ({r['layers']} layers) {r['mode']}: {r['tok_s']:.1f} tok/s, "
          f"{r['weight_gbs']:.0f} GB/s weights{frac} on {r['card']}")
for r in find("addon_decode_b1_speedup"):
    print(f"addon decode dense/sparse {r['shape']}: {r['speedup']:.2f}x of ideal {r['ideal']:.2f}x "
          f"= {r['fraction_of_ideal']:.2f} (target >= 0.9 at ds-moe-6b)")
PY
grep -h "transformers vs dsmoe" "$OUT"/hf.log 2>/dev/null | tee -a "$OUT/summary.txt"
grep -h "dsmoe_cuda_test:\|dsmoe_cuda_expert_cache_test:" "$OUT"/test.log "$OUT"/cache.log "$OUT"/memcheck.log \
  "$OUT"/racecheck.log "$OUT"/cache-memcheck.log 2>/dev/null | tee -a "$OUT/summary.txt"
grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck.log "$OUT"/racecheck.log "$OUT"/cache-memcheck.log 2>/dev/null |
  tee -a "$OUT/summary.txt"
say "total $(($(date +%s) - START))s, status $STATUS"
exit "$STATUS"
