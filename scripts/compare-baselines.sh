#!/usr/bin/env bash
# DS-MoE vs a dense model of equal total size vs an SMoE (top-2 while training) on the same data and steps.
# Usage: scripts/compare-baselines.sh [tiny|small] [OUT]   (tiny: a few minutes on 2 cores; small: hours)
# Prints one Markdown table: held-out perplexity and bits/byte, active parameters per token.
set -euo pipefail
size=${1:-tiny}
out=${2:-checkpoints/compare-$size}
here=$(cd "$(dirname "$0")/.." && pwd)
dsmoe() { node "$here/bin/dsmoe.js" "$@"; }
case $size in
  tiny) moe=recipes/tiny.yaml dense=recipes/tiny-dense.yaml smoe=recipes/tiny-smoe.yaml ;;
  small) moe=recipes/small.yaml dense=recipes/dense-baseline.yaml smoe=recipes/smoe-baseline.yaml ;;
  *) echo "compare-baselines: size must be tiny or small, got '$size'" >&2; exit 2 ;;
esac
# name  recipe  convert strategy (how the model is served)
# ("--k all" stands for every expert: the dense-trained model itself, run densely)
rows=("ds-moe-all $moe --strategy topk --k all" "ds-moe $moe --strategy threshold-topk"
      "ds-moe-top2 $moe --strategy topk --k 2" "dense $dense --strategy topk --k 1" "smoe $smoe --strategy topk --k 2")
declare -A trained
for row in "${rows[@]}"; do
  read -r name recipe strategy <<<"$row"
  run=$(basename "$recipe" .yaml)
  if [ -z "${trained[$run]:-}" ]; then
    dsmoe train "$recipe" --out "$out/$run/dense" >&2
    trained[$run]=1
  fi
  experts=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).num_experts)' "$out/$run/dense/config.json")
  dsmoe convert "$out/$run/dense" --out "$out/$name/sparse" ${strategy/--k all/--k $experts} >&2
  dsmoe eval "$out/$name/sparse" --json > "$out/$name/eval.json"
done
node -e '
const fs = require("fs");
const out = process.argv[1];
const plan = (n) => JSON.parse(fs.readFileSync(`${out}/${n}/sparse/plan.json`, "utf8"));
console.log("| model | served as | total params | active params / token | held-out perplexity | bits/byte |");
console.log("| --- | --- | ---: | ---: | ---: | ---: |");
for (const [name, served] of [["ds-moe-all", "all experts"], ["ds-moe", "threshold-topk"], ["ds-moe-top2", "top-2"], ["dense", "all (1 expert)"], ["smoe", "top-2"]]) {
  const e = JSON.parse(fs.readFileSync(`${out}/${name}/eval.json`, "utf8"));
  const c = plan(name).cost;
  const m = (x) => (x / 1e6).toFixed(3) + " M";
  console.log(`| ${name} | ${served} | ${m(c.total_params)} | ${m(c.active_params_per_token)} | ${e.perplexity.toFixed(3)} | ${e.bits_per_byte.toFixed(3)} |`);
}' "$out"
