/**
 * The sparse plan (docs/design.md §4): the typed form of `plan.json` and `readPlan`, which validates a plan folder
 * (plan.json and its weights file) completely before anything reaches native code. Everything below `readPlan`
 * (runtime, report) trusts what it returns.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { ModelConfig } from '../model/config';
import { configProblems, headDim } from '../model/config';
import type { SafetensorsHeader } from '../checkpoint/safetensors';
import { readSafetensorsHeader } from '../checkpoint/safetensors';
import { UserError } from '../errors';
import { packedDtype, type PackedDtype } from './dtype';

export const PLAN_FORMAT = 'dsmoe-plan';
export const PLAN_VERSION = 1;

/** Dtype of every 2-D (and 3-D expert) matrix; norms, biases, routers and the shared-expert gate stay F32. */
export type PlanDtype = 'f32' | 'bf16' | 'f16';
export type StrategyName = 'topk' | 'threshold' | 'threshold-topk';
export const PLAN_MODEL_TYPES = ['qwen2_moe', 'olmoe', 'mixtral'] as const;
export type PlanModelType = (typeof PLAN_MODEL_TYPES)[number];

export interface PlanSource {
  dir: string | null; // the dense folder converted; null for random-init plans
  model_sha256: string | null; // sha256 of the dense model.safetensors; null for random-init plans
  model_type: PlanModelType; // the source architecture (olmoe and mixtral: imported, src/interop)
  routing_rule: string; // 'softmax-unnormalized' (DS-MoE) or 'softmax-renormalized'
  random_init?: { seed: number; std: number }; // present on random-init plans
}

export interface PlanStrategy {
  name: StrategyName;
  k: number | null; // the fixed k of `topk`; null when k is chosen per layer (threshold-topk) or varies (threshold)
  epsilon: number; // threshold on E·p_e used by `threshold` and by calibration
  calib_tokens: number; // 0 when no calibration ran (random-init plans)
}

// ---------------------------------------------------------------------------------------------------------------
// ops, in the order they appear in every layer

export interface RmsNormOp {
  op: 'rms_norm';
  weight: string; // [d] F32
}
export interface AttentionOp {
  op: 'attention';
  qkv: string; // [(H+2·KV)·hd, d]   q rows, then k, then v
  qkv_bias: string; // [(H+2·KV)·hd] F32
  o: string; // [d, H·hd]
  // OLMoE imports only: RMSNorm of the whole q [H·hd] and k [KV·hd] projections (F32 weights), before RoPE
  q_norm?: string;
  k_norm?: string;
}
export interface ResidualOp {
  op: 'residual';
}
export interface RouterOp {
  op: 'router';
  weight: string; // [E, d] F32, all experts: probabilities are over all of them
  num_experts: number; // E
}
export interface SelectOp {
  op: 'select';
  mode: 'topk' | 'threshold';
  k: number; // topk: experts per token; threshold: the calibrated count (ceil of the mean), for sizing only
  epsilon: number; // threshold: keep e iff E·p_e > epsilon (the arg-max is always kept)
  k_max: number; // upper bound on experts per token (k ≤ k_max ≤ kept.length)
  renormalize: boolean; // divide the selected probabilities by their sum (Mixtral-style); DS-MoE: false
}
export interface ExpertsOp {
  op: 'experts';
  kept: number[]; // original expert ids, strictly increasing; row block i of gate_up/down is expert kept[i]
  gate_up: string; // [K, 2·I, d]   rows 0..I−1 gate, I..2I−1 up
  down: string; // [K, d, I]
  intermediate_size: number; // I
}
export interface SharedExpertOp {
  op: 'shared_expert';
  gate_up: string; // [2·Is, d]
  down: string; // [d, Is]
  gate: string; // [d] F32, y += sigmoid(m·gate) · shared(m)
  intermediate_size: number; // Is
}
export interface CombineOp {
  op: 'combine';
}
export type PlanOp = RmsNormOp | AttentionOp | ResidualOp | RouterOp | SelectOp | ExpertsOp | SharedExpertOp | CombineOp;

export interface PlanLayer {
  index: number;
  ops: PlanOp[];
}

export interface PlanLayerCalibration {
  k: number; // experts per token chosen for this layer
  mass_covered: number; // mean over calibration tokens of Σ_{selected} p_e
  expert_load: number[]; // [E] share of calibration tokens selecting each expert
  never_selected: number[]; // expert ids no calibration token selected
  mean_selected?: number; // mean selected count under the threshold rule
}
export interface PlanCalibration {
  tokens: number;
  layers: PlanLayerCalibration[];
}

/** Per-token costs; see src/convert/cost.ts for exactly what each counts. */
export interface PlanCost {
  total_params: number;
  active_params_per_token: number;
  dense_active_params_per_token: number;
  active_flops_per_token: number;
  dense_flops_per_token: number;
  active_weight_bytes_per_token: number;
  dense_weight_bytes_per_token: number;
  attention_flops_per_context_token?: number;
}

export interface Plan {
  format: typeof PLAN_FORMAT;
  version: typeof PLAN_VERSION;
  source: PlanSource;
  config: ModelConfig;
  dtype: PlanDtype;
  weights: string; // file name inside the plan folder
  strategy: PlanStrategy;
  embedding: string; // [V, d]
  layers: PlanLayer[];
  final: { norm: string /* [d] F32 */; lm_head: string /* [V, d]; equals `embedding` when tied */ };
  calibration: PlanCalibration | null;
  cost: PlanCost;
}

/** The ops of one layer by role (the order is fixed, so this is a destructuring of `layer.ops`). */
export interface LayerOps {
  attnNorm: RmsNormOp;
  attention: AttentionOp;
  mlpNorm: RmsNormOp;
  router: RouterOp;
  select: SelectOp;
  experts: ExpertsOp;
  shared: SharedExpertOp | null;
}

export function layerOps(layer: PlanLayer): LayerOps {
  const ops = layer.ops;
  const shared = ops[7].op === 'shared_expert' ? (ops[7] as SharedExpertOp) : null;
  return {
    attnNorm: ops[0] as RmsNormOp,
    attention: ops[1] as AttentionOp,
    mlpNorm: ops[3] as RmsNormOp,
    router: ops[4] as RouterOp,
    select: ops[5] as SelectOp,
    experts: ops[6] as ExpertsOp,
    shared,
  };
}

/** The op sequence of every layer; `shared_expert` sits between `experts` and `combine` when present. */
export function expectedOpOrder(hasShared: boolean): PlanOp['op'][] {
  return [
    'rms_norm',
    'attention',
    'residual',
    'rms_norm',
    'router',
    'select',
    'experts',
    ...(hasShared ? (['shared_expert'] as const) : []),
    'combine',
    'residual',
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// readPlan

export interface LoadedPlan {
  plan: Plan;
  weightsPath: string;
  header: SafetensorsHeader;
}

/** Reads and validates a plan folder; throws a UserError naming the file, the field path and what was expected. */
export interface ReadPlanOptions {
  /** The caller applies attention q/k norms (the reference forward does; the native runtime does not yet). */
  qkNorm?: boolean;
}

export function readPlan(dir: string, options: ReadPlanOptions = {}): LoadedPlan {
  const planPath = path.join(dir, 'plan.json');
  if (!fs.existsSync(planPath)) throw new UserError(`${planPath}: not found (is ${dir} a sparse plan folder written by dsmoe convert?)`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(planPath, 'utf8'));
  } catch (error) {
    throw new UserError(`${planPath}: not valid JSON (${(error as Error).message})`);
  }
  const problems: string[] = [];
  const plan = validatePlanJson(raw, problems);
  if (problems.length || !plan) throw new UserError(formatProblems('plan.json', planPath, problems));
  if (!options.qkNorm && plan.layers.some((layer) => layerOps(layer).attention.q_norm !== undefined)) {
    // Refused rather than run without the norms: the logits would be silently wrong.
    throw new UserError(
      `${planPath}: this ${plan.source.model_type} plan applies q/k RMSNorm in attention, which the native runtime does not implement (see docs/interop.md)`,
    );
  }

  const weightsPath = path.join(dir, plan.weights);
  if (!fs.existsSync(weightsPath)) throw new UserError(`${weightsPath}: not found (plan.json: weights names it)`);
  let header: SafetensorsHeader;
  try {
    header = readSafetensorsHeader(weightsPath);
  } catch (error) {
    throw new UserError(`${plan.weights}: not a valid safetensors file (${(error as Error).message})`);
  }
  const weightProblems = weightsProblems(plan, header, fs.statSync(weightsPath).size);
  if (weightProblems.length) throw new UserError(formatProblems(plan.weights, weightsPath, weightProblems));
  return { plan, weightsPath, header };
}

function formatProblems(fileLabel: string, filePath: string, problems: string[]): string {
  const shown = problems.slice(0, 8).map((p) => `${fileLabel}: ${p}`);
  const more = problems.length > 8 ? ` (and ${problems.length - 8} more)` : '';
  return `invalid plan (${filePath}): ${shown.join('; ')}${more}`;
}

// ---------------------------------------------------------------------------------------------------------------
// plan.json structure

const MODEL_CONFIG_KEYS: (keyof ModelConfig)[] = [
  'vocab_size',
  'hidden_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'num_experts',
  'moe_intermediate_size',
  'shared_expert_intermediate_size',
  'num_experts_per_tok',
  'max_position_embeddings',
  'rope_theta',
  'rms_norm_eps',
  'tie_word_embeddings',
];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v));
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const field = (at: string, key: string): string => (at ? `${at}.${key}` : key);

/** Checks a field and records `path: expected X, got Y` when it fails. */
class FieldChecker {
  constructor(private readonly problems: string[]) {}

  fail(at: string, expected: string, got: unknown): void {
    this.problems.push(`${at}: expected ${expected}, got ${show(got)}`);
  }
  string(obj: Obj, key: string, at: string): string | undefined {
    const v = obj[key];
    if (typeof v !== 'string' || v.length === 0) return void this.fail(field(at, key), 'a non-empty string', v);
    return v;
  }
  literal<T extends string | number>(obj: Obj, key: string, at: string, allowed: readonly T[]): T | undefined {
    const v = obj[key] as T;
    if (!allowed.includes(v)) return void this.fail(field(at, key), `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, v);
    return v;
  }
  int(obj: Obj, key: string, at: string, min: number, max: number): number | undefined {
    const v = obj[key];
    if (!isInt(v) || v < min || v > max) return void this.fail(field(at, key), `an integer in ${min}..${max}`, v);
    return v;
  }
  number(obj: Obj, key: string, at: string, min: number): number | undefined {
    const v = obj[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) return void this.fail(field(at, key), `a finite number ≥ ${min}`, v);
    return v;
  }
  boolean(obj: Obj, key: string, at: string): boolean | undefined {
    const v = obj[key];
    if (typeof v !== 'boolean') return void this.fail(field(at, key), 'true or false', v);
    return v;
  }
  object(obj: Obj, key: string, at: string): Obj | undefined {
    const v = obj[key];
    if (!isObj(v)) return void this.fail(field(at, key), 'an object', v);
    return v;
  }
}

function validatePlanJson(raw: unknown, problems: string[]): Plan | undefined {
  const check = new FieldChecker(problems);
  if (!isObj(raw)) {
    check.fail('(top level)', 'an object', raw);
    return undefined;
  }
  if (raw.format !== PLAN_FORMAT) check.fail('format', JSON.stringify(PLAN_FORMAT), raw.format);
  if (raw.version !== PLAN_VERSION) check.fail('version', `${PLAN_VERSION} (this dsmoe reads plan version ${PLAN_VERSION})`, raw.version);
  if (problems.length) return undefined; // not a plan at all: the rest would only add noise

  const config = validateConfig(raw.config, check, problems);
  const dtype = check.literal(raw, 'dtype', '', ['f32', 'bf16', 'f16'] as const);
  const weights = check.string(raw, 'weights', '');
  if (weights && (weights.includes('/') || weights.includes('\\') || weights.startsWith('.'))) {
    check.fail('weights', 'a file name inside the plan folder', weights);
  }
  check.string(raw, 'embedding', '');
  const source = check.object(raw, 'source', '');
  if (source) {
    check.literal(source, 'model_type', 'source', PLAN_MODEL_TYPES);
    if (source.model_sha256 !== null && !(typeof source.model_sha256 === 'string' && /^[0-9a-f]{64}$/.test(source.model_sha256))) {
      check.fail('source.model_sha256', 'a sha256 in hex, or null', source.model_sha256);
    }
  }
  const strategy = check.object(raw, 'strategy', '');
  if (strategy) {
    check.literal(strategy, 'name', 'strategy', ['topk', 'threshold', 'threshold-topk'] as const);
    if (strategy.k !== null) check.int(strategy, 'k', 'strategy', 1, config ? config.num_experts : Infinity);
    check.number(strategy, 'epsilon', 'strategy', 0);
    check.int(strategy, 'calib_tokens', 'strategy', 0, Number.MAX_SAFE_INTEGER);
  }
  const final = check.object(raw, 'final', '');
  if (final) {
    check.string(final, 'norm', 'final');
    const lmHead = check.string(final, 'lm_head', 'final');
    if (config && lmHead && typeof raw.embedding === 'string') {
      if (config.tie_word_embeddings && lmHead !== raw.embedding) {
        check.fail('final.lm_head', `${JSON.stringify(raw.embedding)} (the embedding: config.tie_word_embeddings is true)`, lmHead);
      } else if (!config.tie_word_embeddings && lmHead === raw.embedding) {
        check.fail('final.lm_head', 'a tensor of its own (config.tie_word_embeddings is false)', lmHead);
      }
    }
  }
  if (raw.calibration !== null) {
    const calibration = check.object(raw, 'calibration', '');
    if (calibration && !Array.isArray(calibration.layers)) check.fail('calibration.layers', 'an array', calibration.layers);
  }
  const cost = check.object(raw, 'cost', '');
  if (cost) {
    for (const key of [
      'total_params',
      'active_params_per_token',
      'dense_active_params_per_token',
      'active_flops_per_token',
      'dense_flops_per_token',
      'active_weight_bytes_per_token',
      'dense_weight_bytes_per_token',
    ]) {
      check.number(cost, key, 'cost', 0);
    }
  }
  if (!Array.isArray(raw.layers)) {
    check.fail('layers', 'an array', raw.layers);
  } else if (config) {
    if (raw.layers.length !== config.num_hidden_layers) {
      check.fail('layers', `${config.num_hidden_layers} layers (config.num_hidden_layers)`, `${raw.layers.length} layers`);
    }
    raw.layers.forEach((layer, l) => validateLayer(layer, l, config, check));
  }
  if (problems.length || !config || !dtype) return undefined;
  return raw as unknown as Plan;
}

function validateConfig(raw: unknown, check: FieldChecker, problems: string[]): ModelConfig | undefined {
  if (!isObj(raw)) {
    check.fail('config', 'an object (the model config)', raw);
    return undefined;
  }
  const missing = MODEL_CONFIG_KEYS.filter((key) => !(key in raw));
  if (missing.length) {
    problems.push(`config: missing ${missing.join(', ')}`);
    return undefined;
  }
  const config = raw as unknown as ModelConfig;
  const configIssues = configProblems(config);
  for (const issue of configIssues) problems.push(`config: ${issue}`);
  return configIssues.length ? undefined : config;
}

function validateLayer(raw: unknown, l: number, config: ModelConfig, check: FieldChecker): void {
  const at = `layers[${l}]`;
  if (!isObj(raw)) return check.fail(at, 'an object', raw);
  if (raw.index !== l) check.fail(`${at}.index`, `${l}`, raw.index);
  if (!Array.isArray(raw.ops)) return check.fail(`${at}.ops`, 'an array', raw.ops);
  const order = expectedOpOrder(config.shared_expert_intermediate_size > 0);
  const actual = raw.ops.map((op) => (isObj(op) ? op.op : undefined));
  if (actual.length !== order.length || actual.some((name, i) => name !== order[i])) {
    const why = config.shared_expert_intermediate_size > 0 ? 'with a shared expert' : 'without a shared expert';
    return check.fail(`${at}.ops`, `ops in the order [${order.join(', ')}] (${why})`, `[${actual.join(', ')}]`);
  }
  const ops = raw.ops as Obj[];
  const E = config.num_experts;
  let keptCount = 0;
  const experts = ops[6];
  const keptAt = `${at}.ops[6].kept`;
  if (!Array.isArray(experts.kept) || experts.kept.length === 0) {
    check.fail(keptAt, 'a non-empty array of expert ids', experts.kept);
  } else {
    const kept = experts.kept as unknown[];
    const bad = kept.findIndex((id, i) => !isInt(id) || id < 0 || id >= E || (i > 0 && (id as number) <= (kept[i - 1] as number)));
    if (bad >= 0) {
      check.fail(`${keptAt}[${bad}]`, `expert ids in 0..${E - 1}, unique and increasing`, kept[bad]);
    } else {
      keptCount = kept.length;
    }
  }
  ops.forEach((op, i) => {
    const opAt = `${at}.ops[${i}]`;
    switch (op.op) {
      case 'rms_norm':
        check.string(op, 'weight', opAt);
        break;
      case 'attention':
        check.string(op, 'qkv', opAt);
        check.string(op, 'qkv_bias', opAt);
        check.string(op, 'o', opAt);
        if (op.q_norm !== undefined || op.k_norm !== undefined) {
          check.string(op, 'q_norm', opAt);
          check.string(op, 'k_norm', opAt);
        }
        break;
      case 'router':
        check.string(op, 'weight', opAt);
        check.int(op, 'num_experts', opAt, E, E);
        break;
      case 'select': {
        const mode = check.literal(op, 'mode', opAt, ['topk', 'threshold'] as const);
        const limit = keptCount || E;
        const kMax = check.int(op, 'k_max', opAt, 1, limit);
        check.int(op, 'k', opAt, 1, kMax ?? limit);
        check.number(op, 'epsilon', opAt, 0);
        if (mode === 'threshold' && typeof op.epsilon === 'number' && op.epsilon >= E) {
          check.fail(`${opAt}.epsilon`, `a threshold below E = ${E} (E·p_e ≤ E, so ε ≥ E keeps only the arg-max)`, op.epsilon);
        }
        check.boolean(op, 'renormalize', opAt);
        break;
      }
      case 'experts':
        check.string(op, 'gate_up', opAt);
        check.string(op, 'down', opAt);
        check.int(op, 'intermediate_size', opAt, config.moe_intermediate_size, config.moe_intermediate_size);
        break;
      case 'shared_expert':
        check.string(op, 'gate_up', opAt);
        check.string(op, 'down', opAt);
        check.string(op, 'gate', opAt);
        check.int(op, 'intermediate_size', opAt, config.shared_expert_intermediate_size, config.shared_expert_intermediate_size);
        break;
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// weights file against the plan

/** Every tensor the plan names, with the shape and dtype it must have in the weights file. */
export function expectedTensors(plan: Plan): { name: string; shape: number[]; dtype: PackedDtype; usedAt: string }[] {
  const c = plan.config;
  const d = c.hidden_size;
  const hd = headDim(c);
  const qkvRows = (c.num_attention_heads + 2 * c.num_key_value_heads) * hd;
  const matrix = packedDtype(plan.dtype);
  const f32: PackedDtype = 'F32';
  const out: { name: string; shape: number[]; dtype: PackedDtype; usedAt: string }[] = [
    { name: plan.embedding, shape: [c.vocab_size, d], dtype: matrix, usedAt: 'embedding' },
  ];
  plan.layers.forEach((layer, l) => {
    const ops = layerOps(layer);
    const I = ops.experts.intermediate_size;
    const K = ops.experts.kept.length;
    const at = (i: number, f: string) => `layers[${l}].ops[${i}].${f}`;
    out.push(
      { name: ops.attnNorm.weight, shape: [d], dtype: f32, usedAt: at(0, 'weight') },
      { name: ops.attention.qkv, shape: [qkvRows, d], dtype: matrix, usedAt: at(1, 'qkv') },
      { name: ops.attention.qkv_bias, shape: [qkvRows], dtype: f32, usedAt: at(1, 'qkv_bias') },
      { name: ops.attention.o, shape: [d, c.num_attention_heads * hd], dtype: matrix, usedAt: at(1, 'o') },
      ...(ops.attention.q_norm !== undefined && ops.attention.k_norm !== undefined
        ? [
            { name: ops.attention.q_norm, shape: [c.num_attention_heads * hd], dtype: f32, usedAt: at(1, 'q_norm') },
            { name: ops.attention.k_norm, shape: [c.num_key_value_heads * hd], dtype: f32, usedAt: at(1, 'k_norm') },
          ]
        : []),
      { name: ops.mlpNorm.weight, shape: [d], dtype: f32, usedAt: at(3, 'weight') },
      { name: ops.router.weight, shape: [c.num_experts, d], dtype: f32, usedAt: at(4, 'weight') },
      { name: ops.experts.gate_up, shape: [K, 2 * I, d], dtype: matrix, usedAt: at(6, 'gate_up') },
      { name: ops.experts.down, shape: [K, d, I], dtype: matrix, usedAt: at(6, 'down') },
    );
    if (ops.shared) {
      const Is = ops.shared.intermediate_size;
      out.push(
        { name: ops.shared.gate_up, shape: [2 * Is, d], dtype: matrix, usedAt: at(7, 'gate_up') },
        { name: ops.shared.down, shape: [d, Is], dtype: matrix, usedAt: at(7, 'down') },
        { name: ops.shared.gate, shape: [d], dtype: f32, usedAt: at(7, 'gate') },
      );
    }
  });
  out.push({ name: plan.final.norm, shape: [d], dtype: f32, usedAt: 'final.norm' });
  if (!c.tie_word_embeddings) out.push({ name: plan.final.lm_head, shape: [c.vocab_size, d], dtype: matrix, usedAt: 'final.lm_head' });
  return out;
}

function weightsProblems(plan: Plan, header: SafetensorsHeader, sizeOnDisk: number): string[] {
  const problems: string[] = [];
  if (header.fileSize !== sizeOnDisk) problems.push(`file size ${sizeOnDisk} bytes differs from the ${header.fileSize} read`);
  let dataEnd = header.dataStart;
  for (const info of header.tensors.values()) dataEnd = Math.max(dataEnd, info.end);
  if (dataEnd !== sizeOnDisk) {
    problems.push(
      dataEnd > sizeOnDisk
        ? `truncated: tensors end at byte ${dataEnd} but the file has ${sizeOnDisk} bytes`
        : `${sizeOnDisk - dataEnd} bytes after the last tensor (expected the file to end at byte ${dataEnd})`,
    );
  }
  for (const want of expectedTensors(plan)) {
    const info = header.tensors.get(want.name);
    if (!info) {
      problems.push(`tensor ${JSON.stringify(want.name)} (plan.json: ${want.usedAt}) is missing`);
      continue;
    }
    if (info.shape.length !== want.shape.length || info.shape.some((n, i) => n !== want.shape[i])) {
      problems.push(`tensor ${JSON.stringify(want.name)}: expected shape [${want.shape.join(', ')}], got [${info.shape.join(', ')}]`);
    }
    if (info.dtype !== want.dtype) {
      problems.push(`tensor ${JSON.stringify(want.name)}: expected dtype ${want.dtype} (plan dtype ${plan.dtype}), got ${info.dtype}`);
    }
  }
  return problems;
}
