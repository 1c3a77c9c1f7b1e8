/**
 * `dsmoe convert`'s work: calibrate routing on held-out tokens with the reference forward, decide every layer's
 * select rule (and optionally prune rarely used experts), then write the plan folder (docs/design.md §4).
 *
 * Calibration passes, each a reference forward over all calibration windows:
 *   A. under the strategy's own rule (threshold-topk: the threshold, which is what it calibrates on);
 *   B. threshold-topk only: under the chosen per-layer top-k, so the statistics describe the plan as written;
 *   C. with pruning only: under the plan's rule restricted to the kept experts (loss after pruning);
 *   D. dense (all experts), the quality the plan is compared with.
 * Router probabilities at layer l depend on the routing of layers < l, which is why each rule gets its own pass
 * rather than re-reading the dense pass's probabilities.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import type { RoutingRule } from '../model/reference';
import { attentionExperts, expertPoolOf, isDenseLayer, type ModelConfig } from '../model/config';
import { CalibrationRunner, type PassResult } from './calibration_pass';
import type { AttentionSelectOp, AttentionStrategy, AttentionStrategyName, Plan, PlanChoice, PlanClassDtypes, PlanDtype, SelectOp, StrategyName } from '../plan/plan_format';
import { layerOps, PLAN_TOKENIZER_FILES } from '../plan/plan_format';
import { readPlan } from '../plan/read_plan';
import { allAttentionExperts, buildPlan, denseLayerSelect, WEIGHTS_FILE, type AttentionDecisions } from '../plan/build_plan';
import type { DenseCheckpoint } from '../checkpoint/dense';
import { denseLayerRoutingStats, K_RULE_SLACK, kFromThresholdMean, keptAfterPruning, layerRoutingStats, type LayerRoutingStats } from './routing_stats';
import { writePackedWeights } from './pack_weights';
import { writeJsonAtomic } from '../checkpoint/atomic';
import { costSplit } from '../plan/cost';

export const DEFAULT_EPSILON = 0.48;
/** Files copied from the dense folder when present (tokenizer.json and tokenizer_config.json are required). */

export interface ConvertOptions {
  outDir: string;
  strategy: StrategyName;
  /** topk: experts per token (default num_experts_per_tok); threshold: k_max; threshold-topk: the largest k allowed. */
  k?: number;
  epsilon: number;
  dtype: PlanDtype;
  /** The routed experts' and attention projections' storage when it differs from `dtype` (e.g. q4_0 experts). */
  dtypes?: PlanClassDtypes;
  /** Token windows of held-out text; may be empty for topk and threshold (no calibration report then). */
  calibWindows: number[][];
  calibSource: string; // where the windows came from, for the report
  /** Prune experts selected by fewer than this share of calibration tokens (0..1); undefined = no pruning. */
  pruneBelow?: number;
  renormalize: boolean;
  /** Worker threads for calibration (default: the machine's parallelism, at most 8). */
  threads?: number;
  /** threshold-topk: this k per layer instead of the one pass A implies (the plan choice measured it). */
  layerK?: number[];
  /** Recorded in plan.json when the routing was chosen from a sweep. */
  choice?: PlanChoice;
  log?: (line: string) => void;
  /** MoA models (docs/design.md §12): how attention experts are selected; default every attention expert (`all`). */
  attention?: AttentionConvertOptions;
}

export interface AttentionConvertOptions {
  strategy: AttentionStrategyName;
  /** topk: attention experts per token (default A); threshold: the most per token (default A). */
  k?: number;
  epsilon?: number; // threshold on A·pa_a (default DEFAULT_EPSILON)
}

export interface CalibrationLayerReport {
  layer: number;
  k: number;
  threshold_mean_selected: number; // mean experts per token under E·p > ε (pass A probabilities)
  threshold_selected_histogram: number[]; // [E+1]
  mean_selected: number; // under the plan's rule
  mass_covered: number;
  expert_load: number[]; // [E]
  never_selected: number[];
  pruned: number[];
  kept: number[];
  after_pruning?: { mass_covered: number; expert_load: number[]; never_selected: number[] };
  /** MoA models: the attention experts' routing and pruning in this layer (same fields as the MLP's above). */
  attention?: CalibrationAttentionReport;
}

export interface CalibrationAttentionReport {
  mean_selected: number; // under the plan's attention rule, before pruning
  expert_load: number[]; // [A] under the plan's attention rule (`all`: 1 for every expert), before pruning
  /** [A] the share of tokens with A·pa_a > ε: what pruning reads for `all`, where every token runs every expert. */
  threshold_load: number[];
  pruned: number[];
  kept: number[];
}

export interface CalibrationReport {
  source: string;
  tokens: number; // tokens fed through the model
  windows: number;
  context: number;
  strategy: StrategyName;
  epsilon: number;
  k_rule: string;
  prune_below: number | null;
  loss: { dense: number | null; plan: number | null; pruned: number | null }; // mean next-token cross-entropy, nats
  layers: CalibrationLayerReport[];
}

export interface ConvertResult {
  plan: Plan;
  calibration: CalibrationReport | null;
  table: string;
}

function selectRule(select: Omit<SelectOp, 'op'>, kept?: number[]): RoutingRule {
  return select.mode === 'topk'
    ? { mode: 'topk', k: select.k, renormalize: select.renormalize, ...(kept ? { kept } : {}) }
    : { mode: 'threshold', epsilon: select.epsilon, kMax: select.k_max, renormalize: select.renormalize, ...(kept ? { kept } : {}) };
}

/**
 * The attention experts' selection of a MoA plan (docs/design.md §12) from the --attention-* flags, before
 * calibration; null for plain attention. `all` and `topk` need no calibration; `threshold` is sized by the
 * calibrated mean count when there is calibration (else by k_max); threshold-topk needs calibration. Every attention
 * expert starts kept; `--prune-below` prunes them after calibration (`pruneAttentionExperts`).
 */
export function attentionDecisions(config: ModelConfig, options: AttentionConvertOptions | undefined, where: string): AttentionDecisions | null {
  const A = attentionExperts(config);
  if (A === 0) {
    if (options && options.strategy !== 'all') throw new UserError(`--attention-strategy ${options.strategy}: ${where} has no attention experts (config.attention_experts is 0)`);
    return null;
  }
  const all = allAttentionExperts(config);
  const strategy = options?.strategy ?? 'all';
  if (strategy === 'all') return all;
  const k = options?.k ?? A;
  if (!Number.isInteger(k) || k < 1 || k > A) throw new UserError(`--attention-k must be an integer in 1..${A} (attention_experts in ${where}), got ${k}`);
  const epsilon = options?.epsilon ?? DEFAULT_EPSILON;
  if (!(epsilon >= 0 && epsilon < A)) throw new UserError(`--attention-epsilon must be a number in 0..${A} (exclusive: A·pa_a ≤ A = ${A}), got ${epsilon}`);
  // threshold-topk starts as the threshold it calibrates on; decideAndWrite turns it into each layer's top-k.
  const select = strategy === 'topk'
    ? { mode: 'topk' as const, k, epsilon, k_max: k, renormalize: false }
    : { mode: 'threshold' as const, k, epsilon, k_max: k, renormalize: false };
  return { kept: all.kept, select: all.select.map(() => select), expectedExperts: all.expectedExperts.map(() => k) };
}

export async function convertCheckpoint(dense: DenseCheckpoint, options: ConvertOptions): Promise<ConvertResult> {
  const log = options.log ?? (() => undefined);
  const c = dense.config;
  const E = c.num_experts;
  attentionDecisions(c, options.attention, dense.dir); // flags checked before calibration
  const { strategy, epsilon } = options;
  const renormalize = options.renormalize || dense.normTopkProb;
  const k = options.k ?? (strategy === 'topk' ? c.num_experts_per_tok : E);
  if (!Number.isInteger(k) || k < 1 || k > E) throw new UserError(`--k must be an integer in 1..${E} (the model has ${E} experts), got ${k}`);
  if (!(epsilon >= 0) || !Number.isFinite(epsilon)) throw new UserError(`--epsilon must be a finite number ≥ 0, got ${epsilon}`);
  if (strategy === 'threshold' && epsilon >= E) {
    throw new UserError(`--epsilon ${epsilon} keeps only the arg-max: E·p_e ≤ E = ${E}, so ε must be below ${E}`);
  }
  const pruneBelow = options.pruneBelow;
  if (pruneBelow !== undefined && !(pruneBelow >= 0 && pruneBelow <= 1)) throw new UserError(`--prune-below must be a share in 0..1, got ${pruneBelow}`);
  const windows = options.calibWindows.filter((w) => w.length > 0);
  const calibrating = windows.length > 0;
  if (!calibrating && options.attention?.strategy === 'threshold-topk' && attentionExperts(c) > 0) {
    throw new UserError('--attention-strategy threshold-topk needs calibration tokens (--calib-tokens > 0)');
  }
  if (!calibrating && (strategy === 'threshold-topk' || pruneBelow !== undefined)) {
    throw new UserError(`${strategy === 'threshold-topk' ? 'the threshold-topk strategy' : '--prune-below'} needs calibration tokens (--calib-tokens > 0)`);
  }
  if (path.resolve(options.outDir) === path.resolve(dense.dir)) throw new UserError('--out must differ from the dense checkpoint folder');
  const tokenCount = windows.reduce((n, w) => n + w.length, 0);
  if (dense.modelType) {
    log(`imported ${dense.modelType} checkpoint: routing ${renormalize ? 'softmax-renormalized' : 'softmax-unnormalized'}${dense.qkNorm ? ', q/k RMSNorm' : ''}`);
    for (const note of dense.importNotes ?? []) log(`  ${note}`);
  }
  const runner = calibrating ? CalibrationRunner.create(dense, dense.dir, options.threads) : null;
  try {
    return await decideAndWrite(dense, options, { windows, tokenCount, runner, k, renormalize, pruneBelow, log });
  } finally {
    await runner?.close();
  }
}

async function decideAndWrite(
  dense: DenseCheckpoint,
  options: ConvertOptions,
  ctx: { windows: number[][]; tokenCount: number; runner: CalibrationRunner | null; k: number; renormalize: boolean; pruneBelow?: number; log: (line: string) => void },
): Promise<ConvertResult> {
  const { windows, tokenCount, runner, k, renormalize, pruneBelow, log } = ctx;
  const c = dense.config;
  const L = c.num_hidden_layers;
  const E = c.num_experts;
  const { strategy, epsilon } = options;
  const calibrating = windows.length > 0;
  // MoA (docs/design.md §12): the attention experts' selection, calibrated alongside the MLP's in every pass.
  const attention = attentionDecisions(c, options.attention, dense.dir);
  const A = attentionExperts(c);
  const attentionName = options.attention?.strategy ?? 'all';
  const attentionRules = (): RoutingRule[] => (attention ? attention.select.map((s, l) => attentionRule(s, attention.kept[l])) : []);
  // `dense`: every attention expert too (the dense model's pass), whatever the plan selects.
  const pass = async (label: string, rules: RoutingRule[], dense = false): Promise<PassResult> => {
    const started = Date.now();
    const result = await runner!.run(windows, { mlp: rules, attention: dense ? [] : attentionRules() });
    log(`  ${label}: loss ${result.loss.toFixed(4)} (${((Date.now() - started) / 1000).toFixed(1)} s on ${runner!.threads} thread(s))`);
    return result;
  };
  const thresholdRule: RoutingRule = { mode: 'threshold', epsilon, renormalize };

  // --- pass A: the strategy's own rule ------------------------------------------------------------------------
  const select: Omit<SelectOp, 'op'>[] = [];
  let passA: PassResult | null = null;
  if (calibrating) {
    const initial: RoutingRule = strategy === 'topk' ? { mode: 'topk', k, renormalize } : { ...thresholdRule, kMax: k };
    log(`calibrating on ${tokenCount} tokens (${windows.length} windows) under ${strategy === 'topk' ? `top-${k}` : `threshold ε=${epsilon}`}`);
    passA = await pass('pass A', new Array(L).fill(initial));
  }
  // A dense MLP layer (first_k_dense_replace) has no routing to calibrate: its statistics and select are fixed.
  const withDense = (stats: LayerRoutingStats[]) => stats.map((s, l) => (isDenseLayer(c, l) ? denseLayerRoutingStats(s.tokens, E) : s));
  const thresholdStats = passA ? withDense(passA.probs.map((p) => layerRoutingStats(p, E, { ...thresholdRule, kMax: strategy === 'topk' ? undefined : k }))) : null;
  for (let l = 0; l < L; l++) {
    if (strategy === 'topk') {
      select.push({ mode: 'topk', k, epsilon, k_max: k, renormalize });
    } else {
      const chosen = options.layerK?.[l] ?? (thresholdStats ? kFromThresholdMean(thresholdStats[l].meanSelected, k) : k);
      select.push(strategy === 'threshold'
        ? { mode: 'threshold', k: chosen, epsilon, k_max: k, renormalize }
        : { mode: 'topk', k: chosen, epsilon, k_max: chosen, renormalize });
    }
    if (isDenseLayer(c, l)) select[l] = denseLayerSelect(epsilon);
  }

  // Attention threshold-topk: each layer's k from pass A's threshold count, as for the MLP.
  if (attention && attentionName === 'threshold-topk' && passA) {
    attention.select = attention.select.map((s, l) => {
      const mean = layerRoutingStats(passA!.attentionProbs[l], A, attentionRule(s, attention.kept[l])).meanSelected;
      const chosen = kFromThresholdMean(mean, s.k_max);
      return { mode: 'topk', k: chosen, epsilon: s.epsilon, k_max: chosen, renormalize: false };
    });
    attention.expectedExperts = attention.select.map((s) => s.k);
  }

  // --- pass B: the plan's rule when it differs from pass A's ---------------------------------------------------
  let planPass = passA;
  if (calibrating && (strategy === 'threshold-topk' || attentionName === 'threshold-topk')) {
    log(`calibrating under the chosen per-layer top-k (${select.map((s) => s.k).join(', ')})`);
    planPass = await pass('pass B', select.map((s) => selectRule(s)));
  }
  const planStats = planPass ? withDense(planPass.probs.map((p, l) => layerRoutingStats(p, E, selectRule(select[l])))) : null;
  const attentionStats = attention && planPass
    ? planPass.attentionProbs.map((p, l) => layerRoutingStats(p, A, attentionRule(attention.select[l], attention.kept[l])))
    : null;
  if (attention && attentionStats && attentionName === 'threshold') {
    // The threshold's calibrated mean count sizes the plan and its cost, as for MLP experts.
    attention.select = attention.select.map((s, l) => ({ ...s, k: kFromThresholdMean(attentionStats[l].meanSelected, s.k_max) }));
    attention.expectedExperts = attentionStats.map((st) => st.meanSelected);
  }

  // --- pass C: pruning ------------------------------------------------------------------------------------------
  const allExperts = Array.from({ length: E }, (_, e) => e);
  let kept = Array.from({ length: L }, (_, l) => (isDenseLayer(c, l) ? [0] : allExperts));
  let prunedStats: LayerRoutingStats[] | null = null;
  let prunedAttentionStats: LayerRoutingStats[] | null = null;
  let prunedLoss: number | null = null;
  // MoA: each layer's attention-expert load as pruning reads it (`all` runs every expert: the threshold's load).
  const attentionEpsilon = options.attention?.epsilon ?? DEFAULT_EPSILON;
  const attentionThresholdLoad = attention && planPass
    ? planPass.attentionProbs.map((p, l) => layerRoutingStats(p, A, { mode: 'threshold', epsilon: attentionEpsilon, kept: attention.kept[l] }).expertLoad)
    : null;
  if (pruneBelow !== undefined && planStats) {
    const keptPerLayer = planStats.map((s, l) => keptAfterPruning(s.expertLoad, pruneBelow, select[l].mode === 'topk' ? select[l].k : 1));
    // A pool shared by several layers (Megrez2) is stored once: it keeps every expert any of its layers keeps.
    kept = keptPerLayer.map((_, l) => (isDenseLayer(c, l) ? [0] : poolUnion(keptPerLayer, c, l)));
    kept.forEach((ids, l) => {
      select[l].k_max = Math.min(select[l].k_max, ids.length);
      select[l].k = Math.min(select[l].k, select[l].k_max);
    });
    const prunedCount = kept.reduce((n, ids, l) => n + (isDenseLayer(c, l) ? 0 : E - ids.length), 0);
    const prunedAttention = attention && attentionStats && attentionThresholdLoad
      ? pruneAttentionExperts(attention, attentionName === 'all' ? attentionThresholdLoad : attentionStats.map((st) => st.expertLoad), pruneBelow)
      : 0;
    log(
      `pruning ${prunedCount} expert(s)${attention ? ` and ${prunedAttention} attention expert(s)` : ''} selected by fewer than ` +
        `${(pruneBelow * 100).toFixed(2)}% of tokens${attention && attentionName === 'all' ? ` (attention experts: A·pa > ${attentionEpsilon})` : ''}; measuring the loss after pruning`,
    );
    const prunedPass = await pass('pass C (pruned)', select.map((s, l) => selectRule(s, kept[l])));
    prunedStats = withDense(prunedPass.probs.map((p, l) => layerRoutingStats(p, E, selectRule(select[l], kept[l]))));
    if (attention) prunedAttentionStats = prunedPass.attentionProbs.map((p, l) => layerRoutingStats(p, A, attentionRule(attention.select[l], attention.kept[l])));
    prunedLoss = prunedPass.loss;
  }
  const finalAttentionStats = prunedAttentionStats ?? attentionStats;
  if (attention && finalAttentionStats) {
    // What the cost assumes per token: the kept experts (`all`), k (topk), the calibrated mean (threshold).
    attention.expectedExperts = attention.select.map((s, l) => (s.mode === 'threshold' ? finalAttentionStats[l].meanSelected : s.k));
  }

  // --- pass D: dense quality --------------------------------------------------------------------------------------
  // A top-k plan with k = E (before pruning) is the dense model: its loss is the dense loss, no pass needed.
  let denseLoss: number | null = null;
  const planIsDense = select.every((s, l) => isDenseLayer(c, l) || (s.mode === 'topk' && s.k === E && !s.renormalize)) && attentionName === 'all' &&
    (!attention || attention.kept.every((ids) => ids.length === A));
  if (calibrating && planPass) {
    if (planIsDense) {
      denseLoss = planPass.loss;
    } else {
      log('measuring the dense loss on the same tokens');
      denseLoss = (await pass('pass D (dense)', new Array(L).fill({ mode: 'dense' }), true)).loss;
    }
  }

  const finalStats = prunedStats ?? planStats;
  const expectedExperts = select.map((s, l) => (s.mode === 'threshold' && finalStats ? finalStats[l].meanSelected : s.k));
  const calibration: CalibrationReport | null = planStats && thresholdStats && planPass
    ? {
        source: options.calibSource,
        tokens: tokenCount,
        windows: windows.length,
        context: Math.max(...windows.map((w) => w.length)),
        strategy,
        epsilon,
        k_rule: `threshold-topk: k = ceil(mean experts per token under E·p_e > ε − ${K_RULE_SLACK}), within 1..--k`,
        prune_below: pruneBelow ?? null,
        loss: { dense: denseLoss, plan: planPass.loss, pruned: prunedLoss },
        layers: planStats.map((s, l) => ({
          layer: l,
          k: select[l].k,
          threshold_mean_selected: thresholdStats[l].meanSelected,
          threshold_selected_histogram: thresholdStats[l].selectedHistogram,
          mean_selected: s.meanSelected,
          mass_covered: s.massCovered,
          expert_load: s.expertLoad,
          never_selected: s.neverSelected,
          pruned: isDenseLayer(c, l) ? [] : allExperts.filter((e) => !kept[l].includes(e)), // a dense layer's one expert is all it has
          kept: kept[l],
          ...(prunedStats
            ? { after_pruning: { mass_covered: prunedStats[l].massCovered, expert_load: prunedStats[l].expertLoad, never_selected: prunedStats[l].neverSelected } }
            : {}),
          ...(attention && attentionStats && attentionThresholdLoad
            ? {
                attention: {
                  mean_selected: attentionStats[l].meanSelected,
                  expert_load: attentionStats[l].expertLoad,
                  threshold_load: attentionThresholdLoad[l],
                  pruned: Array.from({ length: A }, (_, a) => a).filter((a) => !attention.kept[l].includes(a)),
                  kept: attention.kept[l],
                },
              }
            : {}),
        })),
      }
    : null;

  const plan = buildPlan({
    config: c,
    dtype: options.dtype,
    dtypes: options.dtypes,
    source: {
      dir: path.resolve(dense.dir),
      model_sha256: dense.sha256(),
      model_type: dense.modelType ?? 'qwen2_moe',
      routing_rule: renormalize ? 'softmax-renormalized' : 'softmax-unnormalized',
    },
    qkNorm: dense.qkNorm === true,
    strategy: {
      name: strategy,
      k: strategy === 'topk' ? k : null,
      epsilon,
      calib_tokens: tokenCount,
      ...(attentionExperts(c) > 0 ? { attention: attentionStrategy(options.attention, attentionExperts(c)) } : {}),
    },
    kept,
    select,
    expectedExperts,
    choice: options.choice,
    ...(attention ? { attention } : {}),
    calibration: finalStats
      ? {
          tokens: tokenCount,
          layers: finalStats.map((s, l) => ({
            k: select[l].k,
            mass_covered: s.massCovered,
            expert_load: s.expertLoad,
            never_selected: s.neverSelected,
            mean_selected: s.meanSelected,
          })),
          ...(attention && finalAttentionStats
            ? {
                attention_layers: finalAttentionStats.map((s, l) => ({
                  k: attention.select[l].k,
                  mass_covered: s.massCovered,
                  expert_load: s.expertLoad,
                  never_selected: s.neverSelected,
                  mean_selected: s.meanSelected,
                })),
              }
            : {}),
        }
      : null,
  });

  // --- write the folder -----------------------------------------------------------------------------------------
  fs.mkdirSync(options.outDir, { recursive: true });
  for (const file of PLAN_TOKENIZER_FILES) {
    const from = path.join(dense.dir, file);
    if (fs.existsSync(from)) fs.copyFileSync(from, path.join(options.outDir, file));
    else if (file.startsWith('tokenizer')) throw new UserError(`${from}: missing (the plan folder needs the model's tokenizer)`);
  }
  log(`writing ${WEIGHTS_FILE} (${plan.dtypes ? `${plan.dtype}, experts ${plan.dtypes.experts}, attention ${plan.dtypes.attention}` : plan.dtype})`);
  writePackedWeights(path.join(options.outDir, WEIGHTS_FILE), plan, dense, {
    format: 'pt',
    producer: 'dsmoe convert',
    source_sha256: plan.source.model_sha256 ?? '',
  });
  if (calibration) writeJsonAtomic(path.join(options.outDir, 'calibration.json'), calibration);
  writeJsonAtomic(path.join(options.outDir, 'plan.json'), plan);
  readPlan(options.outDir, { qkNorm: dense.qkNorm === true }); // what the runtime will check, checked now
  return { plan, calibration, table: calibrationTable(plan, calibration) };
}

/**
 * Prunes the attention experts selected by fewer than `share` of calibration tokens (`load[l][a]`), as MLP experts
 * are pruned: never fewer than the layer's top-k (1 for `all` and threshold). Narrows each layer's select to the kept
 * experts (`all`: k = k_max = K) and returns how many attention experts were pruned.
 */
function pruneAttentionExperts(attention: AttentionDecisions, load: number[][], share: number): number {
  let pruned = 0;
  attention.kept = attention.kept.map((ids, l) => {
    const s = attention.select[l];
    const keep = keptAfterPruning(load[l], share, s.mode === 'topk' ? s.k : 1);
    pruned += ids.length - keep.length;
    return keep;
  });
  attention.select = attention.select.map((s, l) => {
    const K = attention.kept[l].length;
    if (s.mode === 'all') return { ...s, k: K, k_max: K };
    const kMax = Math.min(s.k_max, K);
    return { ...s, k_max: kMax, k: Math.min(s.k, kMax) };
  });
  return pruned;
}

/** A routing rule of the reference forward for an attention_select (`all`: top-K of the kept). */
function attentionRule(select: Omit<AttentionSelectOp, 'op'>, kept: number[]): RoutingRule {
  if (select.mode === 'all') return { mode: 'topk', k: kept.length, kept };
  return select.mode === 'topk' ? { mode: 'topk', k: select.k, kept } : { mode: 'threshold', epsilon: select.epsilon, kMax: select.k_max, kept };
}

/** plan.json's `strategy.attention`. */
function attentionStrategy(options: AttentionConvertOptions | undefined, A: number): AttentionStrategy {
  const name = options?.strategy ?? 'all';
  return { name, k: name === 'topk' ? (options?.k ?? A) : null, epsilon: name === 'all' ? 0 : (options?.epsilon ?? DEFAULT_EPSILON) };
}

/** The per-layer summary printed by `dsmoe convert`. */
export function calibrationTable(plan: Plan, calibration: CalibrationReport | null): string {
  const lines: string[] = [];
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  lines.push('layer  mode       k  thr-mean  mean-k  mass    load min..max   never  pruned');
  plan.layers.forEach((layer, l) => {
    const select = layerOps(layer).select;
    const cal = calibration?.layers[l];
    const load = cal ? (cal.after_pruning?.expert_load ?? cal.expert_load) : null;
    const keptLoad = load && cal ? cal.kept.map((e) => load[e]) : null;
    const cells = [
      String(l).padStart(5),
      select.mode.padEnd(9),
      String(select.k).padStart(2),
      cal ? cal.threshold_mean_selected.toFixed(2).padStart(8) : '       -',
      cal ? cal.mean_selected.toFixed(2).padStart(6) : '     -',
      cal ? pct(cal.after_pruning?.mass_covered ?? cal.mass_covered).padStart(6) : '     -',
      keptLoad ? `${pct(Math.min(...keptLoad))}..${pct(Math.max(...keptLoad))}`.padEnd(15) : '-'.padEnd(15),
      cal ? (cal.never_selected.length ? cal.never_selected.join(',') : '-').padStart(5) : '    -',
      cal && cal.pruned.length ? cal.pruned.join(',') : '-',
    ];
    lines.push(cells.join('  '));
  });
  if (calibration) {
    const f = (x: number | null) => (x === null ? '-' : x.toFixed(4));
    lines.push(
      `calibration loss (nats/token, ${calibration.tokens} tokens): dense ${f(calibration.loss.dense)}  plan ${f(calibration.loss.plan)}` +
        (calibration.loss.pruned !== null ? `  after pruning ${f(calibration.loss.pruned)}` : ''),
    );
  }
  const attention = plan.strategy.attention;
  if (attention) {
    const selects = plan.layers.map((layer) => layerOps(layer).attnSelect!);
    const rule = attention.name === 'all'
      ? 'every attention expert'
      : attention.name === 'threshold'
        ? `A·pa > ${selects[0].epsilon}, at most ${selects[0].k_max}`
        : `top-k, k per layer ${selects.map((s) => s.k).join(', ')}`;
    const means = plan.calibration?.attention_layers?.map((layer) => layer.mean_selected?.toFixed(2)).join(', ');
    lines.push(`attention experts: ${rule} of ${plan.config.attention_experts} per token${means ? ` (calibrated mean per layer ${means})` : ''}`);
    const pruned = calibration?.layers.map((layer) => layer.attention?.pruned ?? []) ?? [];
    if (pruned.some((ids) => ids.length)) lines.push(`attention experts pruned per layer: ${pruned.map((ids, l) => `${l}: ${ids.length ? ids.join(',') : '-'}`).join('  ')}`);
  }
  const cost = plan.cost;
  const split = costSplit(plan);
  lines.push(
    `active params/token ${cost.active_params_per_token.toLocaleString('en-US')} of ${cost.dense_active_params_per_token.toLocaleString('en-US')} dense ` +
      `(${pct(cost.active_params_per_token / cost.dense_active_params_per_token)}; attention ${split.attention.params.toLocaleString('en-US')}, MLP ${split.mlp.params.toLocaleString('en-US')}); ` +
      `weight bytes/token ${pct(cost.active_weight_bytes_per_token / cost.dense_weight_bytes_per_token)} of dense`,
  );
  return lines.join('\n');
}

/** The experts kept by any layer of layer l's expert pool, increasing. */
function poolUnion(keptPerLayer: number[][], config: ModelConfig, l: number): number[] {
  const pool = expertPoolOf(config, l);
  const union = new Set<number>();
  keptPerLayer.forEach((ids, layer) => {
    if (expertPoolOf(config, layer) === pool) ids.forEach((e) => union.add(e));
  });
  return [...union].sort((a, b) => a - b);
}
