/**
 * Hugging Face MoE folders built in TypeScript following the published layouts (transformers' modeling_qwen2_moe,
 * modeling_olmoe, modeling_mixtral, and transformers 5's fused-expert conversion mapping), and an independent forward
 * that reads those raw names with each architecture's own semantics. Until fixtures made by transformers itself are
 * committed (scripts/make_hf_fixtures.py), these check that import maps names and routing rules correctly.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readSafetensors, writeSafetensors, type DType } from '../../src/checkpoint/safetensors';
import { applyRope, causalAttention, linear, rmsNorm, silu, sigmoid, softmaxRows } from '../../src/model/reference';
import { buildTokenizer } from '../../src/data/tokenizer';
import { seededUniform } from './dense_fixtures';

export type Arch = 'qwen2_moe' | 'olmoe' | 'mixtral';

export interface FixtureOptions {
  dtype?: 'F32' | 'BF16';
  sharded?: boolean;
  /** transformers 5's fused experts: mlp.experts.gate_up_proj [E, 2I, d], mlp.experts.down_proj [E, d, I]. */
  fused?: boolean;
  sharedExpert?: boolean; // qwen2_moe only
  normTopkProb?: boolean; // qwen2_moe and olmoe
  seed?: number;
}

export const shape = { V: 260, d: 8, L: 2, H: 2, KV: 1, E: 4, I: 6, Is: 5, k: 2 };
const hd = shape.d / shape.H;

export function hfConfigFor(arch: Arch, options: FixtureOptions): Record<string, unknown> {
  const common = {
    vocab_size: shape.V,
    hidden_size: shape.d,
    num_hidden_layers: shape.L,
    num_attention_heads: shape.H,
    num_key_value_heads: shape.KV,
    num_experts_per_tok: shape.k,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
    hidden_act: 'silu',
  };
  if (arch === 'qwen2_moe') {
    return {
      architectures: ['Qwen2MoeForCausalLM'],
      model_type: 'qwen2_moe',
      ...common,
      num_experts: shape.E,
      moe_intermediate_size: shape.I,
      shared_expert_intermediate_size: options.sharedExpert ? shape.Is : 0,
      intermediate_size: 32,
      norm_topk_prob: options.normTopkProb === true,
      decoder_sparse_step: 1,
      mlp_only_layers: [],
      use_sliding_window: false,
      rope_parameters: { rope_type: 'default', rope_theta: 1000 }, // transformers 5 spelling
    };
  }
  if (arch === 'olmoe') {
    return {
      architectures: ['OlmoeForCausalLM'],
      model_type: 'olmoe',
      ...common,
      num_experts: shape.E,
      intermediate_size: shape.I,
      norm_topk_prob: options.normTopkProb === true,
      clip_qkv: null,
      attention_bias: false,
      rope_theta: 1000,
    };
  }
  return {
    architectures: ['MixtralForCausalLM'],
    model_type: 'mixtral',
    ...common,
    num_local_experts: shape.E,
    intermediate_size: shape.I,
    sliding_window: null,
    rope_theta: 1000,
  };
}

/** The checkpoint's tensors, with the names and shapes the architecture's modeling file gives them. */
export function hfTensorShapes(arch: Arch, options: FixtureOptions): [string, number[]][] {
  const { V, d, L, H, KV, E, I, Is } = shape;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [V, d]]];
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    out.push(
      [`${p}.input_layernorm.weight`, [d]],
      [`${p}.self_attn.q_proj.weight`, [H * hd, d]],
      [`${p}.self_attn.k_proj.weight`, [KV * hd, d]],
      [`${p}.self_attn.v_proj.weight`, [KV * hd, d]],
      [`${p}.self_attn.o_proj.weight`, [d, H * hd]],
      [`${p}.post_attention_layernorm.weight`, [d]],
    );
    if (arch === 'qwen2_moe') {
      out.push([`${p}.self_attn.q_proj.bias`, [H * hd]], [`${p}.self_attn.k_proj.bias`, [KV * hd]], [`${p}.self_attn.v_proj.bias`, [KV * hd]]);
    }
    if (arch === 'olmoe') out.push([`${p}.self_attn.q_norm.weight`, [H * hd]], [`${p}.self_attn.k_norm.weight`, [KV * hd]]);
    const moe = arch === 'mixtral' && !options.fused ? `${p}.block_sparse_moe` : `${p}.mlp`;
    out.push([`${moe}.gate.weight`, [E, d]]);
    if (options.fused) {
      out.push([`${moe}.experts.gate_up_proj`, [E, 2 * I, d]], [`${moe}.experts.down_proj`, [E, d, I]]);
    } else {
      for (let e = 0; e < E; e++) {
        const [g, u, dn] = arch === 'mixtral' ? ['w1', 'w3', 'w2'] : ['gate_proj', 'up_proj', 'down_proj'];
        out.push([`${moe}.experts.${e}.${g}.weight`, [I, d]], [`${moe}.experts.${e}.${u}.weight`, [I, d]], [`${moe}.experts.${e}.${dn}.weight`, [d, I]]);
      }
    }
    if (arch === 'qwen2_moe' && options.sharedExpert) {
      out.push(
        [`${p}.mlp.shared_expert.gate_proj.weight`, [Is, d]],
        [`${p}.mlp.shared_expert.up_proj.weight`, [Is, d]],
        [`${p}.mlp.shared_expert.down_proj.weight`, [d, Is]],
        [`${p}.mlp.shared_expert_gate.weight`, [1, d]],
      );
    }
  }
  out.push(['model.norm.weight', [d]], ['lm_head.weight', [V, d]]);
  return out;
}

/** Writes a Hugging Face folder of `arch` with random weights; returns the tensors as stored (after rounding). */
export function writeHfFolder(dir: string, arch: Arch, options: FixtureOptions = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  const rand = seededUniform(options.seed ?? 7);
  const dtype: DType = options.dtype ?? 'F32';
  const tensors = hfTensorShapes(arch, options).map(([name, tensorShape]) => {
    const data = new Float32Array(tensorShape.reduce((a, b) => a * b, 1));
    const isNorm = name.endsWith('norm.weight');
    for (let i = 0; i < data.length; i++) {
      const u = (rand() * 2 - 1) * Math.sqrt(3);
      data[i] = isNorm ? 1 + 0.2 * u : name.endsWith('.bias') ? 0.1 * u : 0.4 * u;
    }
    return { name, dtype, shape: tensorShape, data };
  });
  if (options.sharded) {
    const half = Math.ceil(tensors.length / 2);
    const shards = [tensors.slice(0, half), tensors.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(path.join(dir, file), shard, { format: 'pt' });
      for (const t of shard) weightMap[t.name] = file;
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  } else {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  }
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfigFor(arch, options), null, 2));
  buildTokenizer({ type: 'byte', vocab_size: 257 }, '').save(dir, { modelMaxLength: 64 });
}

/** Every tensor of a Hugging Face folder, read with the plain safetensors reader (no interop code). */
export function readHfFolderTensors(dir: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  const index = path.join(dir, 'model.safetensors.index.json');
  const files = fs.existsSync(index)
    ? [...new Set(Object.values(JSON.parse(fs.readFileSync(index, 'utf8')).weight_map as Record<string, string>))]
    : ['model.safetensors'];
  for (const file of files) {
    const st = readSafetensors(path.join(dir, file));
    for (const name of st.header.tensors.keys()) out.set(name, st.get(name));
  }
  return out;
}

/**
 * Each architecture's forward as its modeling file writes it, on raw checkpoint names: Qwen2-MoE adds q/k/v biases
 * and the sigmoid-gated shared expert; OLMoE normalises the whole q and k projections before RoPE; Mixtral always
 * renormalises the top-k probabilities. Routing: softmax over all experts, top-k (ties to the lower id).
 */
export function hfForward(arch: Arch, config: Record<string, unknown>, w: Map<string, Float32Array>, tokens: number[]): Float32Array {
  const { d, L, H, KV, E, I, V } = shape;
  const k = config.num_experts_per_tok as number;
  const eps = config.rms_norm_eps as number;
  const theta = (config.rope_theta as number | undefined) ?? ((config.rope_parameters as Record<string, number>).rope_theta);
  const renormalize = arch === 'mixtral' || config.norm_topk_prob === true;
  const T = tokens.length;
  const get = (name: string) => {
    const t = w.get(name);
    if (!t) throw new Error(`fixture has no ${name}`);
    return t;
  };
  const fusedSlice = (name: string, e: number, rows: number, from: number, perExpertRows: number) =>
    get(name).slice((e * perExpertRows + from) * (name.endsWith('down_proj') ? I : d), (e * perExpertRows + from + rows) * (name.endsWith('down_proj') ? I : d));
  const positions = tokens.map((_, t) => t);
  let h = new Float32Array(T * d);
  tokens.forEach((tok, t) => h.set(get('model.embed_tokens.weight').subarray(tok * d, (tok + 1) * d), t * d));
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    const a = rmsNorm(h, get(`${p}.input_layernorm.weight`), eps);
    const bias = (n: string) => (arch === 'qwen2_moe' ? get(`${p}.self_attn.${n}_proj.bias`) : undefined);
    let q = linear(a, get(`${p}.self_attn.q_proj.weight`), H * hd, bias('q'));
    let kk = linear(a, get(`${p}.self_attn.k_proj.weight`), KV * hd, bias('k'));
    const v = linear(a, get(`${p}.self_attn.v_proj.weight`), KV * hd, bias('v'));
    if (arch === 'olmoe') {
      q = rmsNorm(q, get(`${p}.self_attn.q_norm.weight`), eps); // over all H·hd values of the token
      kk = rmsNorm(kk, get(`${p}.self_attn.k_norm.weight`), eps);
    }
    applyRope(q, positions, H, hd, theta);
    applyRope(kk, positions, KV, hd, theta);
    const o = linear(causalAttention(q, kk, v, H, KV, hd), get(`${p}.self_attn.o_proj.weight`), d);
    for (let i = 0; i < h.length; i++) h[i] += o[i];

    const m = rmsNorm(h, get(`${p}.post_attention_layernorm.weight`), eps);
    const moe = w.has(`${p}.block_sparse_moe.gate.weight`) ? `${p}.block_sparse_moe` : `${p}.mlp`;
    const probs = softmaxRows(linear(m, get(`${moe}.gate.weight`), E), E);
    const fused = w.has(`${moe}.experts.gate_up_proj`);
    const [gn, un, dn] = arch === 'mixtral' ? ['w1', 'w3', 'w2'] : ['gate_proj', 'up_proj', 'down_proj'];
    const y = new Float32Array(T * d);
    for (let t = 0; t < T; t++) {
      const pt = Array.from(probs.subarray(t * E, (t + 1) * E));
      const chosen = pt.map((_, e) => e).sort((x, z) => pt[z] - pt[x] || x - z).slice(0, k);
      const sum = chosen.reduce((s, e) => s + pt[e], 0);
      const row = m.slice(t * d, (t + 1) * d);
      for (const e of chosen) {
        const gate = fused ? fusedSlice(`${moe}.experts.gate_up_proj`, e, I, 0, 2 * I) : get(`${moe}.experts.${e}.${gn}.weight`);
        const up = fused ? fusedSlice(`${moe}.experts.gate_up_proj`, e, I, I, 2 * I) : get(`${moe}.experts.${e}.${un}.weight`);
        const down = fused ? fusedSlice(`${moe}.experts.down_proj`, e, d, 0, d) : get(`${moe}.experts.${e}.${dn}.weight`);
        const g = linear(row, gate, I);
        const u = linear(row, up, I);
        const hidden = g.map((x, i) => silu(x) * u[i]);
        const out = linear(hidden, down, d);
        const weight = renormalize ? pt[e] / sum : pt[e];
        for (let i = 0; i < d; i++) y[t * d + i] += weight * out[i];
      }
      if (w.has(`${p}.mlp.shared_expert.gate_proj.weight`)) {
        const Is = shape.Is;
        const g = linear(row, get(`${p}.mlp.shared_expert.gate_proj.weight`), Is);
        const u = linear(row, get(`${p}.mlp.shared_expert.up_proj.weight`), Is);
        const out = linear(g.map((x, i) => silu(x) * u[i]), get(`${p}.mlp.shared_expert.down_proj.weight`), d);
        const scale = sigmoid(linear(row, get(`${p}.mlp.shared_expert_gate.weight`), 1)[0]);
        for (let i = 0; i < d; i++) y[t * d + i] += scale * out[i];
      }
    }
    for (let i = 0; i < h.length; i++) h[i] += y[i];
  }
  const final = rmsNorm(h, get('model.norm.weight'), eps);
  return linear(final, get('lm_head.weight'), V);
}

/** max |a − b| / max |b|: the relative difference the acceptance uses. */
export function relativeDifference(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}
