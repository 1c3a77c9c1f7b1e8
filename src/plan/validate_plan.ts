/**
 * The structure of `plan.json`: every field present with the type, range and op order the runtime relies on.
 * Problems are collected, not thrown, so that one message can list the first few of them.
 */
import type { ModelConfig } from '../model/config';
import { attentionExperts, configProblems, denseIntermediateSize, expertPoolOf, headsPerAttentionExpert, isDenseLayer, preGated, REQUIRED_MODEL_CONFIG_KEYS } from '../model/config';
import type { Plan } from './plan_format';
import { DENSE_MODEL_TYPES } from '../checkpoint/dense';
import { expectedOpOrder, PLAN_FORMAT, PLAN_VERSION } from './plan_format';
import { classDtypeProblems, MATRIX_DTYPES, PLAN_DTYPES } from './dtype';

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

export function validatePlanJson(raw: unknown, problems: string[]): Plan | undefined {
  const check = new FieldChecker(problems);
  if (!isObj(raw)) {
    check.fail('(top level)', 'an object', raw);
    return undefined;
  }
  if (raw.format !== PLAN_FORMAT) check.fail('format', JSON.stringify(PLAN_FORMAT), raw.format);
  if (raw.version !== PLAN_VERSION) check.fail('version', `${PLAN_VERSION} (this dsmoe reads plan version ${PLAN_VERSION})`, raw.version);
  if (problems.length) return undefined; // not a plan at all: the rest would only add noise

  const config = validateConfig(raw.config, check, problems);
  const dtype = check.literal(raw, 'dtype', '', PLAN_DTYPES);
  if (raw.dtypes !== undefined) validateClassDtypes(raw, config, check);
  const weights = check.string(raw, 'weights', '');
  if (weights && (weights.includes('/') || weights.includes('\\') || weights.startsWith('.'))) {
    check.fail('weights', 'a file name inside the plan folder', weights);
  }
  check.string(raw, 'embedding', '');
  const source = check.object(raw, 'source', '');
  if (source) {
    check.literal(source, 'model_type', 'source', DENSE_MODEL_TYPES);
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
    const moa = config !== undefined && attentionExperts(config) > 0;
    if (moa || strategy.attention !== undefined) {
      const attention = moa ? check.object(strategy, 'attention', 'strategy') : undefined;
      if (!moa) check.fail('strategy.attention', 'no attention strategy (config.attention_experts is 0)', strategy.attention);
      if (attention) {
        check.literal(attention, 'name', 'strategy.attention', ['all', 'topk', 'threshold', 'threshold-topk'] as const);
        if (attention.k !== null) check.int(attention, 'k', 'strategy.attention', 1, attentionExperts(config as ModelConfig));
        check.number(attention, 'epsilon', 'strategy.attention', 0);
      }
    }
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
    if (!problems.length) checkPools(raw.layers as Obj[], config, check);
  }
  if (problems.length || !config || !dtype) return undefined;
  return raw as unknown as Plan;
}

/** `dtypes`: both classes named, each a matrix dtype; a quantized class needs rows of whole 32-weight blocks. */
function validateClassDtypes(raw: Obj, config: ModelConfig | undefined, check: FieldChecker): void {
  const dtypes = check.object(raw, 'dtypes', '');
  if (!dtypes) return;
  const experts = check.literal(dtypes, 'experts', 'dtypes', MATRIX_DTYPES);
  const attention = check.literal(dtypes, 'attention', 'dtypes', MATRIX_DTYPES);
  const extra = Object.keys(dtypes).filter((key) => key !== 'experts' && key !== 'attention');
  if (extra.length) check.fail(`dtypes.${extra[0]}`, 'no other class than experts and attention', dtypes[extra[0]]);
  if (!config || !experts || !attention) return;
  for (const problem of classDtypeProblems(config, { experts, attention })) check.fail('dtypes', 'storage the config\'s shapes allow', problem);
}

function validateConfig(raw: unknown, check: FieldChecker, problems: string[]): ModelConfig | undefined {
  if (!isObj(raw)) {
    check.fail('config', 'an object (the model config)', raw);
    return undefined;
  }
  const missing = REQUIRED_MODEL_CONFIG_KEYS.filter((key) => !(key in raw));
  if (missing.length) {
    problems.push(`config: missing ${missing.join(', ')}`);
    return undefined;
  }
  const config = raw as unknown as ModelConfig;
  const configIssues = configProblems(config);
  for (const issue of configIssues) problems.push(`config: ${issue}`);
  return configIssues.length ? undefined : config;
}

/** 2 when the config has attention experts (attention_router and attention_select precede attention), else 0. */
function moaShift(config: ModelConfig): number {
  return attentionExperts(config) > 0 ? 2 : 0;
}

/** A MoA layer's attention op: `kept` strictly increasing ids in 0..A−1, `heads_per_expert` N_h. Returns K (0 when invalid). */
function checkAttentionKept(op: Obj, opAt: string, config: ModelConfig, check: FieldChecker): number {
  const A = attentionExperts(config);
  check.int(op, 'heads_per_expert', opAt, headsPerAttentionExpert(config), headsPerAttentionExpert(config));
  if (!Array.isArray(op.kept) || op.kept.length === 0) {
    check.fail(`${opAt}.kept`, 'a non-empty array of attention expert ids', op.kept);
    return 0;
  }
  const kept = op.kept as unknown[];
  const bad = kept.findIndex((id, i) => !isInt(id) || id < 0 || id >= A || (i > 0 && (id as number) <= (kept[i - 1] as number)));
  if (bad >= 0) {
    check.fail(`${opAt}.kept[${bad}]`, `attention expert ids in 0..${A - 1}, unique and increasing`, kept[bad]);
    return 0;
  }
  return kept.length;
}

/** Every layer of a shared expert pool names its first layer's tensors and kept list (the weights file holds them once). */
function checkPools(layers: Obj[], config: ModelConfig, check: FieldChecker): void {
  const expertsOf = (l: number) => (layers[l].ops as Obj[])[6 + moaShift(config)];
  layers.forEach((_, l) => {
    const pool = expertPoolOf(config, l);
    if (pool === l) return;
    const mine = expertsOf(l);
    const owner = expertsOf(pool);
    for (const key of ['gate_up', 'down', 'kept']) {
      if (JSON.stringify(mine[key]) !== JSON.stringify(owner[key])) {
        check.fail(`layers[${l}].ops[${6 + moaShift(config)}].${key}`, `${JSON.stringify(owner[key])}, as layer ${pool} (its expert pool)`, mine[key]);
      }
    }
  });
}

function validateLayer(raw: unknown, l: number, config: ModelConfig, check: FieldChecker): void {
  const at = `layers[${l}]`;
  if (!isObj(raw)) return check.fail(at, 'an object', raw);
  if (raw.index !== l) check.fail(`${at}.index`, `${l}`, raw.index);
  if (!Array.isArray(raw.ops)) return check.fail(`${at}.ops`, 'an array', raw.ops);
  const A = attentionExperts(config);
  const dense = isDenseLayer(config, l); // a dense MLP layer: one expert, selected with weight 1, no shared expert
  const hasShared = config.shared_expert_intermediate_size > 0 && !dense;
  const order = expectedOpOrder(hasShared, A > 0);
  const actual = raw.ops.map((op) => (isObj(op) ? op.op : undefined));
  if (actual.length !== order.length || actual.some((name, i) => name !== order[i])) {
    const why = `${hasShared ? 'with' : 'without'} a shared expert${dense ? ' (a dense layer: config.first_k_dense_replace)' : ''}${A > 0 ? `, attention_experts ${A}` : ''}`;
    return check.fail(`${at}.ops`, `ops in the order [${order.join(', ')}] (${why})`, `[${actual.join(', ')}]`);
  }
  const ops = raw.ops as Obj[];
  const E = config.num_experts;
  const shift = moaShift(config);
  const attentionKept = A > 0 ? checkAttentionKept(ops[1 + shift], `${at}.ops[${1 + shift}]`, config, check) : 0;
  let keptCount = 0;
  const experts = ops[6 + shift];
  const keptAt = `${at}.ops[${6 + shift}].kept`;
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
    if (dense && JSON.stringify(kept) !== '[0]') check.fail(keptAt, '[0] (a dense layer keeps its one expert, its MLP)', kept);
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
        if (A === 0 && (op.kept !== undefined || op.heads_per_expert !== undefined)) {
          check.fail(`${opAt}.kept`, 'no kept / heads_per_expert (plain attention: config.attention_experts is 0)', op.kept ?? op.heads_per_expert);
        }
        break;
      case 'attention_router':
        check.string(op, 'weight', opAt);
        check.int(op, 'num_experts', opAt, A, A);
        break;
      case 'attention_select': {
        const mode = check.literal(op, 'mode', opAt, ['all', 'topk', 'threshold'] as const);
        const limit = attentionKept || A;
        const kMax = check.int(op, 'k_max', opAt, 1, limit);
        check.int(op, 'k', opAt, 1, kMax ?? limit);
        if (mode === 'all' && kMax !== undefined && (kMax !== limit || op.k !== limit)) {
          check.fail(`${opAt}.k`, `k = k_max = ${limit} (mode all: every kept attention expert)`, op.k);
        }
        check.number(op, 'epsilon', opAt, 0);
        if (mode === 'threshold' && typeof op.epsilon === 'number' && op.epsilon >= A) {
          check.fail(`${opAt}.epsilon`, `a threshold below A = ${A} (A·pa_a ≤ A, so ε ≥ A keeps only the arg-max)`, op.epsilon);
        }
        if (check.boolean(op, 'renormalize', opAt) === true) check.fail(`${opAt}.renormalize`, 'false (attention probabilities are never renormalised)', true);
        break;
      }
      case 'router':
        check.string(op, 'weight', opAt);
        check.int(op, 'num_experts', opAt, E, E);
        if (preGated(config, l) ? op.pre_gate !== true : op.pre_gate !== undefined) {
          check.fail(
            `${opAt}.pre_gate`,
            preGated(config, l) ? 'true (config.pre_gate routes this layer on the previous layer\'s mlp_norm output)' : 'no pre_gate field on this layer',
            op.pre_gate,
          );
        }
        if (dense ? op.dense !== true : op.dense !== undefined) {
          check.fail(`${opAt}.dense`, dense ? 'true (a dense layer: config.first_k_dense_replace)' : 'no dense field on this layer (an MoE layer)', op.dense);
        }
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
        const renormalize = check.boolean(op, 'renormalize', opAt);
        // A dense layer's MLP must get weight exactly 1: top-1 of its one expert, renormalised (1/E ÷ 1/E).
        if (dense && (mode !== 'topk' || op.k !== 1 || op.k_max !== 1 || renormalize !== true)) {
          check.fail(opAt, 'mode topk, k 1, k_max 1, renormalize true (a dense layer runs its MLP with weight 1)', `mode ${String(op.mode)}, k ${String(op.k)}, k_max ${String(op.k_max)}, renormalize ${String(op.renormalize)}`);
        }
        break;
      }
      case 'experts':
        check.string(op, 'gate_up', opAt);
        check.string(op, 'down', opAt);
        {
          const width = dense ? denseIntermediateSize(config) : config.moe_intermediate_size;
          check.int(op, 'intermediate_size', opAt, width, width);
        }
        if ((config.experts_shared_frequency ?? 1) > 1) {
          check.int(op, 'pool', opAt, expertPoolOf(config, l), expertPoolOf(config, l));
        } else if (op.pool !== undefined) {
          check.fail(`${opAt}.pool`, 'no pool field (config.experts_shared_frequency is 1)', op.pool);
        }
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
