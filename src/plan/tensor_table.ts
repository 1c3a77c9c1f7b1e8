/**
 * The one table of tensor names and shapes (docs/design.md §2, §4). Every weight of the model exists in three layouts,
 * and this file is the only one that spells their names:
 *
 * - dense: the checkpoint folder's tensors, transformers' Qwen2-MoE names, matrices [out, in] (y = x·W^T);
 * - training: the trainer's tfjs variables, matrices [in, out] (y = x·W), q/k/v fused, experts side by side;
 *   internal keys, never written to disk (the checkpoint holds the dense layout);
 * - plan: the packed tensors of a plan's weights file, each a concatenation of row blocks of dense tensors.
 *
 * `denseLayer` describes one layer's dense tensors, each with the piece of a training parameter it is;
 * `planTensors` lists a plan's packed tensors, each with the dense tensors it concatenates. Packing
 * (src/convert/pack_weights.ts) concatenates those blocks, the plan reference (plan_reference.ts) slices them back
 * out, readPlan checks names, shapes and dtypes against the same rows, and the runtime's spec (src/runtime/spec.ts)
 * hands the same rows to native code, which takes every name from them.
 */
import type { ModelConfig } from '../model/config';
import { attentionExperts, denseIntermediateSize, expertPoolOf, headDim, headsPerAttentionExpert, isDenseLayer } from '../model/config';
import { storageOf, tensorDtype, type StorageDtype, type TensorDtype } from './dtype';
import type { Plan } from './plan_format';
import { classDtypes, layerOps, moaOffset } from './plan_format';

// ---------------------------------------------------------------------------------------------------------------
// names

/** Dense checkpoint names: transformers' `modeling_qwen2_moe.py`, plus OLMoE's q/k norms for imported models. */
export const denseNames = {
  embed: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  lmHead: 'lm_head.weight',
  inputNorm: (l: number) => `model.layers.${l}.input_layernorm.weight`,
  postAttentionNorm: (l: number) => `model.layers.${l}.post_attention_layernorm.weight`,
  q: (l: number) => `model.layers.${l}.self_attn.q_proj.weight`,
  k: (l: number) => `model.layers.${l}.self_attn.k_proj.weight`,
  v: (l: number) => `model.layers.${l}.self_attn.v_proj.weight`,
  qBias: (l: number) => `model.layers.${l}.self_attn.q_proj.bias`,
  kBias: (l: number) => `model.layers.${l}.self_attn.k_proj.bias`,
  vBias: (l: number) => `model.layers.${l}.self_attn.v_proj.bias`,
  qNorm: (l: number) => `model.layers.${l}.self_attn.q_norm.weight`,
  kNorm: (l: number) => `model.layers.${l}.self_attn.k_norm.weight`,
  o: (l: number) => `model.layers.${l}.self_attn.o_proj.weight`,
  // MoA layers (docs/design.md §12): the attention router and each attention expert's q/o slices replace q_proj/o_proj.
  attnRouter: (l: number) => `model.layers.${l}.self_attn.gate.weight`,
  attnExpertQ: (l: number, a: number) => `model.layers.${l}.self_attn.experts.${a}.q_proj.weight`,
  attnExpertQBias: (l: number, a: number) => `model.layers.${l}.self_attn.experts.${a}.q_proj.bias`,
  attnExpertO: (l: number, a: number) => `model.layers.${l}.self_attn.experts.${a}.o_proj.weight`,
  router: (l: number) => `model.layers.${l}.mlp.gate.weight`,
  expertGate: (l: number, e: number) => `model.layers.${l}.mlp.experts.${e}.gate_proj.weight`,
  expertUp: (l: number, e: number) => `model.layers.${l}.mlp.experts.${e}.up_proj.weight`,
  expertDown: (l: number, e: number) => `model.layers.${l}.mlp.experts.${e}.down_proj.weight`,
  /** transformers 5 fuses a layer's experts into `${prefix}.gate_up_proj` [E, 2I, d] and `${prefix}.down_proj` [E, d, I]. */
  fusedExpertsPrefix: (l: number) => `model.layers.${l}.mlp.experts`,
  sharedGate: (l: number) => `model.layers.${l}.mlp.shared_expert.gate_proj.weight`,
  sharedUp: (l: number) => `model.layers.${l}.mlp.shared_expert.up_proj.weight`,
  sharedDown: (l: number) => `model.layers.${l}.mlp.shared_expert.down_proj.weight`,
  sharedExpertGate: (l: number) => `model.layers.${l}.mlp.shared_expert_gate.weight`,
  // A dense layer's MLP (first_k_dense_replace): Megrez2's and DeepSeek's names, transformers' LlamaMLP.
  mlpGate: (l: number) => `model.layers.${l}.mlp.gate_proj.weight`,
  mlpUp: (l: number) => `model.layers.${l}.mlp.up_proj.weight`,
  mlpDown: (l: number) => `model.layers.${l}.mlp.down_proj.weight`,
};

/**
 * Training parameter names (src/model/params.ts holds their shapes and initialisation). The `train.` prefix keeps
 * them apart from the plan's names: `train.layers.0.attn.qkv` is [d, (H+2·KV)·hd], the plan's `layers.0.attn.qkv`
 * its transpose.
 */
export const trainingNames = {
  embed: 'train.embed', // [V, d]
  lmHead: 'train.lm_head', // [d, V]
  finalNorm: 'train.norm', // [d]
  attnNorm: (l: number) => `train.layers.${l}.attn_norm`, // [d]
  qkv: (l: number) => `train.layers.${l}.attn.qkv`, // [d, (H+2·KV)·hd]   q heads, then k heads, then v heads (MoA: expert a's q = columns a·N_h·hd..)
  qkvBias: (l: number) => `train.layers.${l}.attn.qkv_bias`, // [(H+2·KV)·hd]
  o: (l: number) => `train.layers.${l}.attn.o`, // [H·hd, d]   MoA: rows a·N_h·hd.. are attention expert a's W_o columns
  attnRouter: (l: number) => `train.layers.${l}.attn.router`, // [d, A]   MoA layers only
  mlpNorm: (l: number) => `train.layers.${l}.mlp_norm`, // [d]
  router: (l: number) => `train.layers.${l}.router`, // [d, E]
  expertsGate: (l: number) => `train.layers.${l}.experts.gate_proj`, // [d, E·I]   expert e: columns e·I..(e+1)·I−1
  expertsUp: (l: number) => `train.layers.${l}.experts.up_proj`, // [d, E·I]
  expertsDown: (l: number) => `train.layers.${l}.experts.down_proj`, // [E·I, d]   expert e: rows e·I..(e+1)·I−1
  sharedGate: (l: number) => `train.layers.${l}.shared.gate_proj`, // [d, Is]
  sharedUp: (l: number) => `train.layers.${l}.shared.up_proj`, // [d, Is]
  sharedDown: (l: number) => `train.layers.${l}.shared.down_proj`, // [Is, d]
  sharedExpertGate: (l: number) => `train.layers.${l}.shared.expert_gate`, // [d, 1]
  mlpGate: (l: number) => `train.layers.${l}.mlp.gate_proj`, // [d, W]   dense layers only
  mlpUp: (l: number) => `train.layers.${l}.mlp.up_proj`, // [d, W]
  mlpDown: (l: number) => `train.layers.${l}.mlp.down_proj`, // [W, d]
};

/** Plan tensor names, as `buildPlan` writes them into plan.json; readers take the names from plan.json. */
export const planNames = {
  embed: 'embed',
  finalNorm: 'norm',
  lmHead: 'lm_head',
  attnNorm: (l: number) => `layers.${l}.attn_norm`,
  qkv: (l: number) => `layers.${l}.attn.qkv`,
  qkvBias: (l: number) => `layers.${l}.attn.qkv_bias`,
  o: (l: number) => `layers.${l}.attn.o`,
  attnRouter: (l: number) => `layers.${l}.attn.router`, // MoA layers only
  qNorm: (l: number) => `layers.${l}.attn.q_norm`,
  kNorm: (l: number) => `layers.${l}.attn.k_norm`,
  mlpNorm: (l: number) => `layers.${l}.mlp_norm`,
  router: (l: number) => `layers.${l}.router`,
  expertsGateUp: (l: number) => `layers.${l}.experts.gate_up`,
  expertsDown: (l: number) => `layers.${l}.experts.down`,
  sharedGateUp: (l: number) => `layers.${l}.shared.gate_up`,
  sharedDown: (l: number) => `layers.${l}.shared.down`,
  sharedGate: (l: number) => `layers.${l}.shared.gate`,
};

// ---------------------------------------------------------------------------------------------------------------
// dense tensors and the training pieces they are

/**
 * Where a dense tensor lives in a training parameter [rows, cols]:
 * contiguous: values [offset, offset + size) as they are ([d, 1] and [1, d] hold the same values in the same order);
 * columns:    columns [offset, offset + shape[0]) of the parameter, transposed to the dense [width, rows];
 * rows:       rows [offset, offset + shape[1]) of the parameter, transposed to the dense [cols, height].
 */
export interface TrainingPiece {
  param: string;
  kind: 'contiguous' | 'columns' | 'rows';
  offset: number;
}

export interface DenseTensor {
  name: string;
  shape: number[]; // as stored: matrices [out, in]
  training: TrainingPiece | null; // null: not trained (imported q/k norms, the zero shared-expert gate)
  /** Always zero, optional when read: the shared-expert gate of a model without one (vLLM always loads it). */
  zero?: true;
}

export interface DenseExpert {
  gate: DenseTensor; // [I, d]
  up: DenseTensor; // [I, d]
  down: DenseTensor; // [d, I]
}

/** One attention expert's slices of W_q, q's bias and W_o (MoA, docs/design.md §12). */
export interface DenseAttentionExpert {
  q: DenseTensor; // [N_h·hd, d]
  qBias: DenseTensor; // [N_h·hd]
  o: DenseTensor; // [d, N_h·hd]
}

export interface DenseLayer {
  inputNorm: DenseTensor; // [d]
  q: DenseTensor | null; // [H·hd, d]   null in a MoA layer (the attention experts hold it)
  k: DenseTensor; // [KV·hd, d]
  v: DenseTensor; // [KV·hd, d]
  qBias: DenseTensor | null; // [H·hd]   zeros when untrained; null in a MoA layer
  kBias: DenseTensor; // [KV·hd]
  vBias: DenseTensor; // [KV·hd]
  qNorm: DenseTensor | null; // [H·hd]   OLMoE imports only
  kNorm: DenseTensor | null; // [KV·hd]
  o: DenseTensor | null; // [d, H·hd]   null in a MoA layer
  attnRouter: DenseTensor | null; // [A, d]   MoA layers only
  attnExperts: DenseAttentionExpert[]; // [A]; empty in a plain layer
  postAttentionNorm: DenseTensor; // [d]
  /**
   * A dense MLP layer (`isDenseLayer`, Megrez2's first_k_dense_replace): `experts` is its one MLP (`mlp.{gate,up,
   * down}_proj`, width W), `router` a zero [E, d] that is in no checkpoint, and there is no shared expert. The plan
   * runs it as a layer of one always-selected expert (docs/design.md §4).
   */
  dense: boolean;
  router: DenseTensor; // [E, d]; a dense layer's is zero and stored only in plans
  /** The layer whose routed experts this layer uses (`expertPoolOf`: Megrez2's cross-layer sharing); l itself unless shared. */
  pool: number;
  /** Whether the experts below are stored with this layer (it is its pool's first layer). */
  ownsExperts: boolean;
  experts: DenseExpert[]; // [E], the pool's: names and training pieces of layer `pool`; a dense layer's [1], its MLP
  shared: { gate: DenseTensor; up: DenseTensor; down: DenseTensor } | null; // [Is, d], [Is, d], [d, Is]; Is > 0
  sharedExpertGate: DenseTensor; // [1, d]: y += sigmoid(m·gate) · shared(m); the zero one when there is no shared expert
}

export interface DenseOptions {
  /** OLMoE-style q/k RMSNorm weights (imported checkpoints). */
  qkNorm?: boolean;
}

const piece = (param: string, kind: TrainingPiece['kind'], offset = 0): TrainingPiece => ({ param, kind, offset });

/** Layer l's dense tensors by role, each with the piece of a training parameter it is. */
export function denseLayer(config: ModelConfig, l: number, options: DenseOptions = {}): DenseLayer {
  const d = config.hidden_size;
  const hd = headDim(config);
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads;
  const I = config.moe_intermediate_size;
  const Is = config.shared_expert_intermediate_size;
  const n = denseNames;
  const t = trainingNames;
  const p = expertPoolOf(config, l);
  const A = attentionExperts(config);
  const expertWidth = headsPerAttentionExpert(config) * hd; // N_h·hd, the q rows / o columns of one attention expert
  const tensor = (name: string, shape: number[], training: TrainingPiece | null): DenseTensor => ({ name, shape, training });
  const moa = A > 0;
  const dense = isDenseLayer(config, l);
  const W = denseIntermediateSize(config);
  const shared =
    Is > 0 && !dense
      ? {
          gate: tensor(n.sharedGate(l), [Is, d], piece(t.sharedGate(l), 'columns')),
          up: tensor(n.sharedUp(l), [Is, d], piece(t.sharedUp(l), 'columns')),
          down: tensor(n.sharedDown(l), [d, Is], piece(t.sharedDown(l), 'rows')),
        }
      : null;
  return {
    inputNorm: tensor(n.inputNorm(l), [d], piece(t.attnNorm(l), 'contiguous')),
    q: moa ? null : tensor(n.q(l), [H * hd, d], piece(t.qkv(l), 'columns', 0)),
    k: tensor(n.k(l), [KV * hd, d], piece(t.qkv(l), 'columns', H * hd)),
    v: tensor(n.v(l), [KV * hd, d], piece(t.qkv(l), 'columns', (H + KV) * hd)),
    qBias: moa ? null : tensor(n.qBias(l), [H * hd], piece(t.qkvBias(l), 'contiguous', 0)),
    kBias: tensor(n.kBias(l), [KV * hd], piece(t.qkvBias(l), 'contiguous', H * hd)),
    vBias: tensor(n.vBias(l), [KV * hd], piece(t.qkvBias(l), 'contiguous', (H + KV) * hd)),
    qNorm: options.qkNorm ? tensor(n.qNorm(l), [H * hd], null) : null,
    kNorm: options.qkNorm ? tensor(n.kNorm(l), [KV * hd], null) : null,
    o: moa ? null : tensor(n.o(l), [d, H * hd], piece(t.o(l), 'rows')),
    attnRouter: moa ? tensor(n.attnRouter(l), [A, d], piece(t.attnRouter(l), 'columns')) : null,
    attnExperts: Array.from({ length: A }, (_, a) => ({
      q: tensor(n.attnExpertQ(l, a), [expertWidth, d], piece(t.qkv(l), 'columns', a * expertWidth)),
      qBias: tensor(n.attnExpertQBias(l, a), [expertWidth], piece(t.qkvBias(l), 'contiguous', a * expertWidth)),
      o: tensor(n.attnExpertO(l, a), [d, expertWidth], piece(t.o(l), 'rows', a * expertWidth)),
    })),
    postAttentionNorm: tensor(n.postAttentionNorm(l), [d], piece(t.mlpNorm(l), 'contiguous')),
    dense,
    router: dense
      ? { ...tensor(n.router(l), [config.num_experts, d], null), zero: true }
      : tensor(n.router(l), [config.num_experts, d], piece(t.router(l), 'columns')),
    pool: p,
    ownsExperts: p === l,
    experts: dense
      ? [
          {
            gate: tensor(n.mlpGate(l), [W, d], piece(t.mlpGate(l), 'columns')),
            up: tensor(n.mlpUp(l), [W, d], piece(t.mlpUp(l), 'columns')),
            down: tensor(n.mlpDown(l), [d, W], piece(t.mlpDown(l), 'rows')),
          },
        ]
      : Array.from({ length: config.num_experts }, (_, e) => ({
          gate: tensor(n.expertGate(p, e), [I, d], piece(t.expertsGate(p), 'columns', e * I)),
          up: tensor(n.expertUp(p, e), [I, d], piece(t.expertsUp(p), 'columns', e * I)),
          down: tensor(n.expertDown(p, e), [d, I], piece(t.expertsDown(p), 'rows', e * I)),
        })),
    shared,
    sharedExpertGate: shared
      ? tensor(n.sharedExpertGate(l), [1, d], piece(t.sharedExpertGate(l), 'contiguous'))
      : { ...tensor(n.sharedExpertGate(l), [1, d], null), zero: true },
  };
}

/** The embedding, final norm and (untied) LM head. */
export function denseOuter(config: ModelConfig): { embed: DenseTensor; finalNorm: DenseTensor; lmHead: DenseTensor | null } {
  const d = config.hidden_size;
  const V = config.vocab_size;
  return {
    embed: { name: denseNames.embed, shape: [V, d], training: piece(trainingNames.embed, 'contiguous') },
    finalNorm: { name: denseNames.finalNorm, shape: [d], training: piece(trainingNames.finalNorm, 'contiguous') },
    lmHead: config.tie_word_embeddings ? null : { name: denseNames.lmHead, shape: [V, d], training: piece(trainingNames.lmHead, 'rows') },
  };
}

/** A plain (non-MoA) layer's q, q bias and o; throws on a MoA layer, which has attention experts instead. */
export function plainAttention(layer: DenseLayer): { q: DenseTensor; qBias: DenseTensor; o: DenseTensor } {
  if (!layer.q || !layer.qBias || !layer.o) throw new Error(`internal: ${layer.inputNorm.name} belongs to a layer with attention experts (MoA)`);
  return { q: layer.q, qBias: layer.qBias, o: layer.o };
}

/** One layer's attention tensors in checkpoint order: plain, or MoA's router and experts (docs/design.md §12). */
function attentionTensors(layer: DenseLayer): DenseTensor[] {
  const qkNorm = layer.qNorm && layer.kNorm ? [layer.qNorm, layer.kNorm] : [];
  if (layer.attnRouter) {
    return [
      layer.attnRouter,
      ...layer.attnExperts.flatMap((x) => [x.q, x.qBias, x.o]),
      layer.k,
      layer.v,
      layer.kBias,
      layer.vBias,
      ...qkNorm,
    ];
  }
  const { q, qBias, o } = plainAttention(layer);
  return [q, layer.k, layer.v, qBias, layer.kBias, layer.vBias, ...qkNorm, o];
}

/**
 * One layer's dense tensors in checkpoint order; a shared pool's experts are listed with its first layer only, and a
 * dense layer has its MLP after the norms (no router, no shared-expert gate).
 */
function denseLayerTensors(layer: DenseLayer): DenseTensor[] {
  if (layer.dense) {
    const mlp = layer.experts[0];
    return [layer.inputNorm, ...attentionTensors(layer), layer.postAttentionNorm, mlp.gate, mlp.up, mlp.down];
  }
  return [
    layer.inputNorm,
    ...attentionTensors(layer),
    layer.postAttentionNorm,
    layer.router,
    ...(layer.ownsExperts ? layer.experts.flatMap((x) => [x.gate, x.up, x.down]) : []),
    ...(layer.shared ? [layer.shared.gate, layer.shared.up, layer.shared.down] : []),
    layer.sharedExpertGate,
  ];
}

/** Every tensor of a dense checkpoint, in the order the trainer writes them (the zero shared-expert gate included). */
export function denseTensors(config: ModelConfig, options: DenseOptions = {}): DenseTensor[] {
  const outer = denseOuter(config);
  const out = [outer.embed];
  for (let l = 0; l < config.num_hidden_layers; l++) out.push(...denseLayerTensors(denseLayer(config, l, options)));
  out.push(outer.finalNorm);
  if (outer.lmHead) out.push(outer.lmHead);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// plan tensors and the dense blocks they pack

/**
 * What the runtime does with a plan tensor: the field names of the native spec (src/runtime/native.ts; `shared*`
 * under its `shared`). q/k norms are applied by the reference forward only, so far.
 */
export type PlanRole =
  | 'embed'
  | 'norm'
  | 'lmHead'
  | 'attnNorm'
  | 'qkv'
  | 'qkvBias'
  | 'o'
  | 'attnRouter'
  | 'qNorm'
  | 'kNorm'
  | 'mlpNorm'
  | 'router'
  | 'gateUp'
  | 'down'
  | 'sharedGateUp'
  | 'sharedDown'
  | 'sharedGate';

export interface PlanTensor {
  role: PlanRole;
  layer: number | null; // null: embedding, final norm, LM head; for a shared pool's gateUp/down, the pool's first layer
  name: string; // as plan.json names it
  shape: number[]; // logical: weights per dimension, what the runtime computes with
  /**
   * Element type: routed experts and qkv/o at their class's dtype (plan.json `dtypes`), the other matrices at the
   * plan's dtype; norms, biases, routers and the shared gate F32.
   */
  dtype: TensorDtype;
  /** What the weights file's header holds: `dtype` and `shape`, or for quantized blocks U8 with rows counted in bytes. */
  storage: { dtype: StorageDtype; shape: number[] };
  usedAt: string; // the plan.json field that names it
  /** The dense tensors whose values, one block after the other, make up this tensor (pruned experts left out). */
  parts: DenseTensor[];
  /** All zeros, made by the packer (a dense layer's router: no dense tensor holds it); `parts` is then empty. */
  zero?: true;
}

/**
 * Every tensor a plan names, in weights-file order: qkv = [q; k; v], qkv_bias = [bq; bk; bv], experts.gate_up = per
 * kept expert [gate_e; up_e], experts.down = [down_e …], shared.gate_up = [gate; up], shared.gate = the [1, d]
 * shared_expert_gate as [d]. A tied LM head is the embedding and is not listed again.
 */
export function planTensors(plan: Plan): PlanTensor[] {
  const c = plan.config;
  const d = c.hidden_size;
  const hd = headDim(c);
  const qkvRows = (c.num_attention_heads + 2 * c.num_key_value_heads) * hd;
  const matrix = tensorDtype(plan.dtype);
  const classes = classDtypes(plan);
  const experts = tensorDtype(classes.experts);
  const attention = tensorDtype(classes.attention);
  const f32: TensorDtype = 'F32';
  const outer = denseOuter(c);
  const out: PlanTensor[] = [];
  const push = (row: Omit<PlanTensor, 'storage'>) => out.push({ ...row, storage: storageOf(row.dtype, row.shape) });
  push({ role: 'embed', layer: null, name: plan.embedding, shape: [c.vocab_size, d], dtype: matrix, usedAt: 'embedding', parts: [outer.embed] });
  plan.layers.forEach((layer, l) => {
    const ops = layerOps(layer);
    const dense = denseLayer(c, l, { qkNorm: ops.attention.q_norm !== undefined });
    const kept = ops.experts.kept.map((e) => dense.experts[e]);
    const K = kept.length;
    const I = ops.experts.intermediate_size;
    const row = (role: PlanRole, name: string, shape: number[], dtype: TensorDtype, op: number, field: string, parts: DenseTensor[]) =>
      push({ role, layer: l, name, shape, dtype, usedAt: `layers[${l}].ops[${op}].${field}`, parts });
    row('attnNorm', ops.attnNorm.weight, [d], f32, 0, 'weight', [dense.inputNorm]);
    const m = moaOffset(layer); // MoA layers: attention_router and attention_select sit before attention
    if (ops.attnRouter && ops.attention.kept) {
      // MoA (docs/design.md §12): q rows and q bias of the kept attention experts, then k and v; o per kept expert.
      const keptA = ops.attention.kept.map((a) => dense.attnExperts[a]);
      const rows = (keptA.length * headsPerAttentionExpert(c) + 2 * c.num_key_value_heads) * hd;
      const width = headsPerAttentionExpert(c) * hd;
      row('attnRouter', ops.attnRouter.weight, [attentionExperts(c), d], f32, 1, 'weight', [dense.attnRouter as DenseTensor]);
      row('qkv', ops.attention.qkv, [rows, d], attention, 3, 'qkv', [...keptA.map((x) => x.q), dense.k, dense.v]);
      row('qkvBias', ops.attention.qkv_bias, [rows], f32, 3, 'qkv_bias', [...keptA.map((x) => x.qBias), dense.kBias, dense.vBias]);
      row('o', ops.attention.o, [keptA.length, d, width], attention, 3, 'o', keptA.map((x) => x.o));
    } else {
      const attn = plainAttention(dense);
      row('qkv', ops.attention.qkv, [qkvRows, d], attention, 1, 'qkv', [attn.q, dense.k, dense.v]);
      row('qkvBias', ops.attention.qkv_bias, [qkvRows], f32, 1, 'qkv_bias', [attn.qBias, dense.kBias, dense.vBias]);
      row('o', ops.attention.o, [d, c.num_attention_heads * hd], attention, 1, 'o', [attn.o]);
    }
    if (dense.qNorm && dense.kNorm) {
      row('qNorm', ops.attention.q_norm as string, dense.qNorm.shape, f32, 1, 'q_norm', [dense.qNorm]);
      row('kNorm', ops.attention.k_norm as string, dense.kNorm.shape, f32, 1, 'k_norm', [dense.kNorm]);
    }
    row('mlpNorm', ops.mlpNorm.weight, [d], f32, 3 + m, 'weight', [dense.postAttentionNorm]);
    if (dense.dense) {
      // A dense layer's zero router: softmax over zero logits, then top-1 over kept [0] renormalised, weighs its MLP by exactly 1.
      push({ role: 'router', layer: l, name: ops.router.weight, shape: [c.num_experts, d], dtype: f32, usedAt: `layers[${l}].ops[${4 + m}].weight`, parts: [], zero: true });
    } else {
      row('router', ops.router.weight, [c.num_experts, d], f32, 4 + m, 'weight', [dense.router]);
    }
    if (dense.ownsExperts) {
      // A shared pool is packed once, with its first layer; the other layers' experts ops name the same tensors.
      row('gateUp', ops.experts.gate_up, [K, 2 * I, d], experts, 6 + m, 'gate_up', kept.flatMap((x) => [x.gate, x.up]));
      row('down', ops.experts.down, [K, d, I], experts, 6 + m, 'down', kept.map((x) => x.down));
    }
    if (ops.shared && dense.shared) {
      const Is = ops.shared.intermediate_size;
      row('sharedGateUp', ops.shared.gate_up, [2 * Is, d], matrix, 7 + m, 'gate_up', [dense.shared.gate, dense.shared.up]);
      row('sharedDown', ops.shared.down, [d, Is], matrix, 7 + m, 'down', [dense.shared.down]);
      row('sharedGate', ops.shared.gate, [d], f32, 7 + m, 'gate', [dense.sharedExpertGate]);
    }
  });
  push({ role: 'norm', layer: null, name: plan.final.norm, shape: [d], dtype: f32, usedAt: 'final.norm', parts: [outer.finalNorm] });
  if (outer.lmHead) {
    push({ role: 'lmHead', layer: null, name: plan.final.lm_head, shape: [c.vocab_size, d], dtype: matrix, usedAt: 'final.lm_head', parts: [outer.lmHead] });
  }
  return out;
}
