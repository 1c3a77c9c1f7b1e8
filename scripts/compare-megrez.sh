#!/usr/bin/env bash
# Megrez2's architecture at equal active parameters: tiny (one set of experts per layer) vs tiny with both layers
# sharing one pool of experts (experts_shared_frequency 2) vs that plus pre-gated routing (recipes/tiny-megrez.yaml).
# Same data, steps and seed; each served with top-2 and with every expert, scored on the same held-out tokens by the
# sparse runtime, and timed (decode, batch 1) by `dsmoe report`: once with every expert resident and once with a
# 25 % expert cache (`--expert-cache 25%`: 2 of 8 experts per layer, or per shared pool, held in memory; the rest read
# from the plan file on demand, with prefetch).
# Usage: scripts/compare-megrez.sh [OUT] [STEPS]   (three tiny trainings, in parallel: about 10 minutes each on 2 idle
# cores at the recipe's 600 steps; STEPS trains fewer, with the schedule shortened to match). Prints one Markdown
# table, and the load average around each model's timed reports. With 2 layers, f = 3 shares exactly what f = 2
# does, so it is not a row. DSMOE_BENCH_LOCK=FILE holds `flock FILE` around each timed report (on a shared machine,
# so that timings do not overlap).
set -euo pipefail
out=${1:-checkpoints/compare-megrez}
steps=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
dsmoe() { node "$here/bin/dsmoe.js" "$@"; }
# timed LOADFILE ARGS…: a timed dsmoe command, under the bench lock when one is given; the load average (1, 5, 15 min)
# just before and just after it (inside the lock) is appended to LOADFILE.
timed() {
  local load=$1 run='cut -d" " -f1-3 /proc/loadavg >> "$0"; node "$@"; status=$?; cut -d" " -f1-3 /proc/loadavg >> "$0"; exit $status'
  shift
  if [ -n "${DSMOE_BENCH_LOCK:-}" ]; then flock "$DSMOE_BENCH_LOCK" bash -c "$run" "$load" "$here/bin/dsmoe.js" "$@"; else bash -c "$run" "$load" "$here/bin/dsmoe.js" "$@"; fi
}
mkdir -p "$out/recipes"
# The shared-only variant: tiny-megrez without the pre-gate (a recipe file of its own, so its hash is its own).
sed -e 's/^name: tiny-megrez$/name: tiny-shared/' -e 's/^  pre_gate: true .*$/  pre_gate: false/' \
  "$here/recipes/tiny-megrez.yaml" > "$out/recipes/tiny-shared.yaml"
grep -q '^  pre_gate: false' "$out/recipes/tiny-shared.yaml"
runs=("tiny $here/recipes/tiny.yaml" "tiny-shared $out/recipes/tiny-shared.yaml" "tiny-megrez $here/recipes/tiny-megrez.yaml")
pids=()
for row in "${runs[@]}"; do
  read -r name recipe <<<"$row"
  [ -f "$out/$name/dense/model.safetensors" ] || { dsmoe train "$recipe" --out "$out/$name/dense" ${steps:+--max-steps "$steps"} > "$out/$name.train.log" 2>&1 & pids+=($!); }
done
for pid in "${pids[@]}"; do wait "$pid"; done
for row in "${runs[@]}"; do
  read -r name recipe <<<"$row"
  dsmoe convert "$out/$name/dense" --out "$out/$name/top2" --strategy topk --k 2 >&2
  dsmoe convert "$out/$name/dense" --out "$out/$name/all" --strategy topk --k 8 >&2
  dsmoe eval "$out/$name/top2" --json > "$out/$name/top2.eval.json"
  dsmoe eval "$out/$name/all" --json > "$out/$name/all.eval.json"
  : > "$out/$name/load.txt"
  timed "$out/$name/load.txt" report --sparse "$out/$name/top2" --out "$out/$name/report" --batch 1 --no-sweep --no-peer --eval-tokens 1024 >&2
  timed "$out/$name/load.txt" report --sparse "$out/$name/top2" --out "$out/$name/report-cache25" --batch 1 --no-sweep --no-peer \
    --no-llama-cpp --expert-dtypes none --reference-windows 0 --eval-tokens 1024 --expert-cache 25% >&2
done
node -e '
const fs = require("fs");
const out = process.argv[1];
const read = (f) => JSON.parse(fs.readFileSync(f, "utf8"));
const m = (x) => (x / 1e6).toFixed(3) + " M";
console.log("| model | served as | stored params | active params / token | weight bytes / token | held-out perplexity | bits/byte | decode tok/s (batch 1, top-2 vs all) | decode tok/s, 25 % expert cache (top-2 vs all) |");
console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
const loads = [];
for (const [name, label] of [["tiny", "tiny (experts per layer)"], ["tiny-shared", "shared pool, f = 2"], ["tiny-megrez", "shared pool, f = 2, pre-gated"]]) {
  const decodeOf = (report) => (mode) => report.throughput.find((r) => r.mode === mode && r.phase === "decode" && r.batch === 1).tokens_per_s.toFixed(0);
  const decode = decodeOf(read(`${out}/${name}/report/report.json`));
  const cached = decodeOf(read(`${out}/${name}/report-cache25/report.json`));
  const [a, b, c, d] = fs.readFileSync(`${out}/${name}/load.txt`, "utf8").trim().split("\n");
  loads.push(`${label}: ${a} → ${b} (resident), ${c} → ${d} (25 % cache)`);
  for (const [served, dir] of [["top-2", "top2"], ["all 8 experts", "all"]]) {
    const c = read(`${out}/${name}/${dir}/plan.json`).cost;
    const e = read(`${out}/${name}/${dir}.eval.json`);
    const speed = dir === "top2" ? `${decode("sparse")} vs ${decode("dense")}` : "";
    const speedCached = dir === "top2" ? `${cached("sparse")} vs ${cached("dense")}` : "";
    console.log(`| ${label} | ${served} | ${m(c.total_params)} | ${m(c.active_params_per_token)} | ${(c.active_weight_bytes_per_token / 1024).toFixed(0)} KiB | ${e.perplexity.toFixed(3)} | ${e.bits_per_byte.toFixed(3)} | ${speed} | ${speedCached} |`);
  }
}
console.log(`\nLoad average (1, 5, 15 min) just before → just after each timed report: ${loads.join("; ")}.`);' "$out"
