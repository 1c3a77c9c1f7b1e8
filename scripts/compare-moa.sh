#!/usr/bin/env bash
# DS-MoE's mixture of attention heads at tiny scale (issue 15): tiny (MoE MLP, plain attention) against tiny-moa (the
# same model whose 4 query heads are 4 attention experts, recipes/tiny-moa.yaml). Same data, steps and seed; one
# training after the other. Each checkpoint is converted with the converter's default routing (chosen from its
# quality–cost sweep on calibration tokens), with fixed top-2 and with every MLP expert; tiny-moa's attention experts
# are served all kept (the paper's top-K mode), top-2 and top-3 of 4, and under the threshold A·pa > 0.48. Every
# plan is scored by `dsmoe eval` on the same held-out tokens (both recipes have the same corpus, split and seq_len).
# Usage: scripts/compare-moa.sh [OUT] [STEPS]   (two tiny trainings: a few minutes each on 2 idle cores at the
# recipe's 600 steps; STEPS trains fewer). Prints one Markdown table.
set -euo pipefail
out=${1:-checkpoints/compare-moa}
steps=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
dsmoe() { node "$here/bin/dsmoe.js" "$@"; }
mkdir -p "$out"
for name in tiny tiny-moa; do
  [ -f "$out/$name/dense/model.safetensors" ] || dsmoe train "$here/recipes/$name.yaml" --out "$out/$name/dense" ${steps:+--max-steps "$steps"} > "$out/$name.train.log" 2>&1
done
# plan folder, model, convert flags. MLP experts per token are the runtime's count on the held-out tokens; attention
# experts per token are the plan's (all: 4; top-k: k; threshold: the calibrated mean).
plans=(
  "tiny/default tiny"
  "tiny/top2 tiny --strategy topk --k 2"
  "tiny/all tiny --strategy topk --k 8"
  "tiny-moa/default-attn-all tiny-moa"
  "tiny-moa/default-attn-top3 tiny-moa --attention-strategy topk --attention-k 3"
  "tiny-moa/default-attn-top2 tiny-moa --attention-strategy topk --attention-k 2"
  "tiny-moa/default-attn-threshold tiny-moa --attention-strategy threshold --attention-epsilon 0.48"
  "tiny-moa/top2-attn-all tiny-moa --strategy topk --k 2"
  "tiny-moa/top2-attn-top3 tiny-moa --strategy topk --k 2 --attention-strategy topk --attention-k 3"
  "tiny-moa/top2-attn-top2 tiny-moa --strategy topk --k 2 --attention-strategy topk --attention-k 2"
  "tiny-moa/top2-attn-threshold tiny-moa --strategy topk --k 2 --attention-strategy threshold --attention-epsilon 0.48"
  "tiny-moa/all-attn-all tiny-moa --strategy topk --k 8"
)
for row in "${plans[@]}"; do
  read -r dir model flags <<<"$row"
  [ -f "$out/$dir/plan.json" ] || dsmoe convert "$out/$model/dense" --out "$out/$dir" $flags --quiet > "$out/$dir.convert.txt"
  [ -f "$out/$dir.eval.json" ] || dsmoe eval "$out/$dir" --json > "$out/$dir.eval.json"
done
node -e '
const fs = require("fs");
const [out, here] = process.argv.slice(1, 3);
const { costSplit, attentionExpertsPerToken } = require(`${here}/dist/plan/cost.js`);
const read = (f) => JSON.parse(fs.readFileSync(f, "utf8"));
const m = (x) => (x / 1e6).toFixed(3) + " M";
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const mlpRouting = (plan) => plan.choice ? `default: ${plan.strategy.name}${plan.strategy.k ? ` k ${plan.strategy.k}` : ` ε ${plan.strategy.epsilon}`}` : plan.strategy.k === 8 ? "all 8" : `top-${plan.strategy.k}`;
const attnRouting = (plan) => {
  const a = plan.strategy.attention;
  if (!a) return "plain (4 heads)";
  return a.name === "all" ? "all 4" : a.name === "topk" ? `top-${a.k} of 4` : `A·pa > ${a.epsilon}`;
};
console.log("| model | MLP experts | attention experts | stored params | active params / token: attention | MLP | total | weight bytes / token | MLP / attention experts per token | held-out perplexity |");
console.log("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const row of process.argv.slice(3)) {
  const [dir, model] = row.split(" ");
  const plan = read(`${out}/${dir}/plan.json`);
  const e = read(`${out}/${dir}.eval.json`);
  const s = costSplit(plan);
  const attn = attentionExpertsPerToken(plan);
  console.log(`| ${model} | ${mlpRouting(plan)} | ${attnRouting(plan)} | ${m(plan.cost.total_params)} | ${m(s.attention.params)} | ${m(s.mlp.params)} | ${m(plan.cost.active_params_per_token)} | ${(plan.cost.active_weight_bytes_per_token / 1024).toFixed(0)} KiB | ${mean(e.routing).toFixed(2)} / ${attn ? mean(attn).toFixed(2) : "4 heads"} | ${e.perplexity.toFixed(3)} |`);
}' "$out" "$here" "${plans[@]}"
