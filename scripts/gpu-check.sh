#!/usr/bin/env bash
# gpu-check.sh — the one script for a GPU machine (nvcc, CMake, PyTorch; no Node, npm or network needed).
#
#   OUT=/some/dir bash scripts/gpu-check.sh          (OUT defaults to ./gpu-out)
#
# Builds native/cuda (docs/cuda.md), runs the kernel test harness, the decode / MoE-layer benchmark, the PyTorch
# peer of the MoE layer on the same card, and the harness again under compute-sanitizer (memcheck on the quick
# subset, racecheck on the expert kernels). Every log lands in $OUT; $OUT/summary.txt lists each step with its exit
# status and time, $OUT/results.jsonl holds every figure (one JSON object per line, each naming the card).
# The whole run is held under 7.5 minutes: each step's timeout is cut to what is left, sanitizers go last.
# Exit status: 0 when every step passed, 1 otherwise (the logs say which).
set -u
cd "$(dirname "$0")/.."

OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUILD="${BUILD:-native/cuda/build}"
START=$(date +%s)
DEADLINE=$((START + 450))
STATUS=0
: > "$OUT/summary.txt"

say() { echo "$*" | tee -a "$OUT/summary.txt"; }

# step NAME CAP_SECONDS CMD...: runs CMD with stdout+stderr in $OUT/NAME.log, under min(CAP, time left - 10 s)
step() {
  local name=$1 cap=$2
  shift 2
  local left=$((DEADLINE - $(date +%s) - 10))
  if [ "$left" -lt 20 ]; then
    say "SKIP $name (out of time)"
    STATUS=1
    return 1
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

SAN="$(command -v compute-sanitizer || true)"
[ -n "$SAN" ] || SAN=/usr/local/cuda/bin/compute-sanitizer

# plain nvcc build of the same two binaries, for a machine whose CMake is too old or fails to configure
nvcc_build() {
  local src=native/cuda flags=(-O3 -std=c++17 -lineinfo --expt-relaxed-constexpr -cudart static --threads 0
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=compute_90)
  local lib=("$src"/runtime.cu "$src"/norm.cu "$src"/rope.cu "$src"/linear.cu "$src"/attention.cu "$src"/router.cu
    "$src"/grouping.cu "$src"/moe_gemv.cu "$src"/moe_gemm.cu "$src"/moe.cu "$src"/sampling.cu)
  mkdir -p "$BUILD"
  nvcc "${flags[@]}" -I"$src" "${lib[@]}" "$src"/test_main.cpp "$src"/reference.cpp "$src"/../src/kernels/sampling.cpp \
    -o "$BUILD/dsmoe_cuda_test" &
  local p1=$!
  nvcc "${flags[@]}" -I"$src" "${lib[@]}" "$src"/bench_main.cu -o "$BUILD/dsmoe_cuda_bench"
  local r2=$?
  wait "$p1" && return "$r2"
}

built=0
if step configure 60 cmake -S native/cuda -B "$BUILD" -DCMAKE_BUILD_TYPE=Release &&
   step build 240 cmake --build "$BUILD" -j "$(nproc)"; then
  built=1
elif export -f nvcc_build && export BUILD && step nvcc-build 300 bash -c nvcc_build; then
  built=1
fi
if [ "$built" = 1 ]; then
  VECTORS="$(pwd)/test/fixtures/sampler_vectors.json"  # the sampler contract's shared vectors (docs/design.md §10)
  step test 120 "$BUILD/dsmoe_cuda_test" --vectors "$VECTORS"
  step bench 90 "$BUILD/dsmoe_cuda_bench"
  step peer 120 python3 native/cuda/peer_torch.py
  if [ -x "$SAN" ]; then
    step memcheck 120 "$SAN" --tool memcheck --error-exitcode 3 "$BUILD/dsmoe_cuda_test" --quick --vectors "$VECTORS"
    step racecheck 60 "$SAN" --tool racecheck --error-exitcode 3 "$BUILD/dsmoe_cuda_test" --quick --filter experts
  else
    say "SKIP sanitizers (compute-sanitizer not found)"
    STATUS=1
  fi
fi

# every JSON figure in one file, then the two targets of issue 7 side by side
cat "$OUT"/bench.log "$OUT"/peer.log 2>/dev/null | grep '^{' > "$OUT/results.jsonl" || true
python3 - "$OUT/results.jsonl" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def find(bench, **kw):
    return [r for r in rows if r.get("bench") == bench and all(r.get(a) == b for a, b in kw.items())]
for r in find("decode_b1"):
    print(f"decode b1 k={r['k']} pdl={r.get('pdl')}: {r['ms_per_token']:.3f} ms/token, {r['weight_gbs']:.0f} GB/s weights = "
          f"{100 * r['fraction_of_d2d']:.1f}% of d2d {r['d2d_gbs']:.0f} GB/s on {r['card']} (target >= 70% for k=13)")
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
PY
grep -h "dsmoe_cuda_test:" "$OUT"/test.log "$OUT"/memcheck.log "$OUT"/racecheck.log 2>/dev/null | tee -a "$OUT/summary.txt"
grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck.log "$OUT"/racecheck.log 2>/dev/null | tee -a "$OUT/summary.txt"
say "total $(($(date +%s) - START))s, status $STATUS"
exit "$STATUS"
