/**
 * The native runtime against the plain-TypeScript reference forward (src/model/reference.ts over the plan's own
 * weights, src/plan/plan_reference.ts): k = E equals the dense reference, top-k and threshold equal the sparse
 * reference, bf16 stays within a stated distance of f32, mixed prefill/decode batches equal one-sequence runs, and
 * seeded generation repeats. Needs the addon (npm run build:native).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeRandomPlan, type RandomPlanOptions } from '../../src/plan/random_plan';
import { planRoutingRules, planWeights } from '../../src/plan/plan_reference';
import type { LoadedPlan } from '../../src/plan/plan_format';
import { referenceForward, nextTokenLoss, type RoutingRule } from '../../src/model/reference';
import type { ModelConfig } from '../../src/model/config';
import { SparseModel } from '../../src/runtime/model';
import { loadNative } from '../../src/runtime/native';
import { nativeSpec } from '../../src/runtime/spec';

const config: ModelConfig = {
  vocab_size: 300,
  hidden_size: 40, // not a multiple of 16: vector tails everywhere
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2, // grouped-query attention
  num_experts: 6,
  moe_intermediate_size: 13,
  shared_expert_intermediate_size: 7,
  num_experts_per_tok: 2,
  max_position_embeddings: 48,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-runtime-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function plan(name: string, dtype: 'f32' | 'bf16' | 'f16', k: number, cfg = config, extra: Partial<RandomPlanOptions> = {}): { dir: string; loaded: LoadedPlan } {
  const dir = path.join(root, name);
  return { dir, loaded: writeRandomPlan(dir, cfg, { dtype, seed: 11, k, ...extra }) };
}

function tokens(n: number, seed = 1): number[] {
  let s = seed;
  return Array.from({ length: n }, () => (s = (s * 1103515245 + 12345) % 2147483648) % config.vocab_size);
}

/** max |a − b| / max |b|: logits of random-init models are small, so compare against their scale. */
function relError(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i])) return Infinity;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

function reference(loaded: LoadedPlan, ids: number[], routing?: RoutingRule | RoutingRule[]): Float32Array {
  return referenceForward(planWeights(loaded), ids, { routing: routing ?? planRoutingRules(loaded.plan) }).logits;
}

describe('native runtime vs the reference forward', () => {
  const ids = tokens(21);

  test('k = E (f32) equals the dense reference to 1e-4 relative, logits and loss', async () => {
    const { dir, loaded } = plan('dense-f32', 'f32', config.num_experts);
    const model = SparseModel.load(dir, { threads: 2 });
    const got = await model.logits(ids);
    const want = reference(loaded, ids, { mode: 'dense' });
    expect(relError(got, want)).toBeLessThan(1e-4);
    const wantLoss = nextTokenLoss(want, ids, config.vocab_size);
    const score = await model.score(ids, { context: ids.length });
    expect(Math.abs(score.loss - wantLoss.sum / wantLoss.count) / (wantLoss.sum / wantLoss.count)).toBeLessThan(1e-4);
    expect(model.routingStats().activeExperts).toBeCloseTo(config.num_experts, 6);
    await model.dispose();
  });

  test('top-2 equals the sparse reference; dense mode equals the dense reference', async () => {
    const { dir, loaded } = plan('top2-f32', 'f32', 2);
    const model = SparseModel.load(dir, { threads: 1 });
    expect(relError(await model.logits(ids), reference(loaded, ids))).toBeLessThan(1e-4);
    const stats = model.routingStats();
    expect(stats.activeExperts).toBeCloseTo(2, 6);
    expect(stats.expertCounts[0].reduce((a, b) => a + b, 0)).toBe(2 * ids.length);
    model.setMode('dense');
    expect(relError(await model.logits(ids), reference(loaded, ids, { mode: 'dense' }))).toBeLessThan(1e-4);
    await model.dispose();
  });

  test('threshold plan equals the threshold reference', async () => {
    const { dir, loaded } = plan('threshold-f32', 'f32', 2, config, { strategy: 'threshold', epsilon: 1.0, kMax: 4 });
    const model = SparseModel.load(dir, { threads: 2 });
    expect(relError(await model.logits(ids), reference(loaded, ids))).toBeLessThan(1e-4);
    const active = model.routingStats().activeExperts;
    expect(active).toBeGreaterThanOrEqual(1);
    expect(active).toBeLessThanOrEqual(4);
    await model.dispose();
  });

  test('bf16 and f16 plans: 1e-4 of the reference on the same (rounded) weights, 2e-2 of the f32 plan', async () => {
    const f32 = plan('dtype-f32', 'f32', 2);
    const f32Model = SparseModel.load(f32.dir, { threads: 2 });
    f32Model.setMode('dense');
    const base = await f32Model.logits(ids);
    for (const dtype of ['bf16', 'f16'] as const) {
      const { dir, loaded } = plan(`dtype-${dtype}`, dtype, 2);
      const model = SparseModel.load(dir, { threads: 2 });
      model.setMode('dense');
      const got = await model.logits(ids);
      expect(relError(got, reference(loaded, ids, { mode: 'dense' }))).toBeLessThan(1e-4);
      // bf16 keeps 8 mantissa bits (relative rounding 2^-9 per weight), f16 11: the logits move by well under 2%.
      expect(relError(got, base)).toBeLessThan(2e-2);
      await model.dispose();
    }
    await f32Model.dispose();
  });

  test('a mixed batch (two prefills, then decodes of both slots in one call) equals single-sequence runs', async () => {
    const { loaded } = plan('batch-f32', 'f32', 2);
    const addon = loadNative();
    const model = new addon.NativeModel(nativeSpec(loaded, 2));
    const ctx = model.newContext(2, 32);
    const a = tokens(9, 3);
    const b = tokens(6, 5);
    const V = config.vocab_size;
    // prefill a[0..7] in slot 0 and b[0..4] in slot 1 in one batch, logits of each last row
    const first = await ctx.evaluate(
      new Int32Array([...a.slice(0, 8), ...b.slice(0, 5)]),
      new Int32Array([...Array(8).fill(0), ...Array(5).fill(1)]),
      new Int32Array([...Array.from({ length: 8 }, (_, i) => i), ...Array.from({ length: 5 }, (_, i) => i)]),
      new Int32Array([7, 12]),
    );
    // decode one token of each slot in one batch
    const second = await ctx.evaluate(new Int32Array([a[8], b[5]]), new Int32Array([0, 1]), new Int32Array([8, 5]), new Int32Array([0, 1]));
    const refA = reference(loaded, a);
    const refB = reference(loaded, b);
    expect(relError(first.subarray(0, V), refA.subarray(7 * V, 8 * V))).toBeLessThan(1e-4);
    expect(relError(first.subarray(V, 2 * V), refB.subarray(4 * V, 5 * V))).toBeLessThan(1e-4);
    expect(relError(second.subarray(0, V), refA.subarray(8 * V, 9 * V))).toBeLessThan(1e-4);
    expect(relError(second.subarray(V, 2 * V), refB.subarray(5 * V, 6 * V))).toBeLessThan(1e-4);
    expect(ctx.slotLength(0)).toBe(9);
    expect(ctx.slotLength(1)).toBe(6);
    model.dispose();
  });

  test('score over non-overlapping windows equals the reference windows', async () => {
    const { dir, loaded } = plan('score-f32', 'f32', 2);
    const model = SparseModel.load(dir, { threads: 2 });
    const long = tokens(40, 9);
    const got = await model.score(long, { context: 16 });
    let sum = 0;
    let count = 0;
    // Windows of 16 tokens, each predicting its tokens after the first (SPEC §7): 40 tokens → 15 + 15 + 7.
    for (let start = 0; start + 1 < long.length; start += 16) {
      const window = long.slice(start, Math.min(start + 16, long.length));
      const r = nextTokenLoss(reference(loaded, window), window, config.vocab_size);
      sum += r.sum;
      count += r.count;
    }
    expect(got.tokens).toBe(37);
    expect(count).toBe(37);
    expect(Math.abs(got.loss - sum / count) / (sum / count)).toBeLessThan(1e-4);
    await model.dispose();
  });

  test('seeded generation repeats exactly; greedy follows the reference arg-max', async () => {
    const { dir, loaded } = plan('gen-f32', 'f32', 2);
    const model = SparseModel.load(dir, { threads: 2 });
    const prompt = tokens(5, 4);
    const streamed: number[] = [];
    const run1 = await model.generate(prompt, { maxNewTokens: 12, temperature: 1.5, topP: 0.9, seed: 42, onToken: (id) => streamed.push(id) });
    const run2 = await model.generate(prompt, { maxNewTokens: 12, temperature: 1.5, topP: 0.9, seed: 42 });
    expect(run1).toHaveLength(12);
    expect(run2).toEqual(run1);
    expect(streamed).toEqual(run1);
    const greedy = await model.generate(prompt, { maxNewTokens: 4, temperature: 0 });
    const seq = [...prompt];
    for (const id of greedy) {
      const logits = reference(loaded, seq);
      const last = logits.subarray((seq.length - 1) * config.vocab_size, seq.length * config.vocab_size);
      let best = 0;
      for (let i = 1; i < last.length; i++) if (last[i] > last[best]) best = i;
      expect(id).toBe(best);
      seq.push(id);
    }
    await model.dispose();
  });

  test('evaluate runs off the event loop and a second concurrent call on one context is rejected', async () => {
    // Big enough that one 48-token prefill takes tens of milliseconds on one thread.
    const big: ModelConfig = { ...config, hidden_size: 256, num_experts: 8, moe_intermediate_size: 256, num_hidden_layers: 4 };
    const { loaded } = plan('async-f32', 'f32', 8, big);
    const model = new (loadNative().NativeModel)(nativeSpec(loaded, 1));
    const ctx = model.newContext(1, 48);
    const ids32 = new Int32Array(tokens(48, 2));
    const pos = new Int32Array(48).map((_, i) => i);
    const run = () => ctx.evaluate(ids32, new Int32Array(48), pos, new Int32Array([47]));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = Date.now();
    const pending = run();
    expect(() => run()).toThrow(/already evaluating/);
    await pending;
    for (let i = 0; i < 4; i++) await run();
    clearInterval(timer);
    // The timer kept firing while the native work ran (a blocking call would starve it).
    expect(ticks).toBeGreaterThanOrEqual(Math.min(3, Math.floor((Date.now() - started) / 20)));
    model.dispose();
  });
});

describe("Megrez2's shared expert pools and pre-gated routing in the runtime", () => {
  // 4 layers, pools {0, 1} and {2, 3}, layers 1..3 routed on the previous layer's mlp_norm output.
  const megrez: ModelConfig = { ...config, num_hidden_layers: 4, experts_shared_frequency: 2, pre_gate: true };
  const ids = tokens(17, 5);

  test('the plan stores each pool once and the native logits equal the reference forward (top-2, threshold, dense)', async () => {
    const { dir, loaded } = plan('megrez-top2', 'f32', 2, megrez);
    const experts = [...loaded.header.tensors.keys()].filter((name) => name.includes('experts'));
    expect(experts.sort()).toEqual(['layers.0.experts.down', 'layers.0.experts.gate_up', 'layers.2.experts.down', 'layers.2.experts.gate_up']);
    const model = SparseModel.load(dir, { threads: 2 });
    const want = reference(loaded, ids);
    expect(relError(await model.logits(ids), want)).toBeLessThan(1e-4);
    // The pre-gate changes the function: routing every layer on its own input gives other logits.
    const ownInput = referenceForward({ ...planWeights(loaded), config: { ...megrez, pre_gate: false } }, ids, { routing: planRoutingRules(loaded.plan) }).logits;
    expect(relError(ownInput, want)).toBeGreaterThan(1e-3);
    model.setMode('dense');
    expect(relError(await model.logits(ids), reference(loaded, ids, { mode: 'dense' }))).toBeLessThan(1e-4);
    await model.dispose();
    const threshold = plan('megrez-threshold', 'f32', 2, megrez, { strategy: 'threshold', epsilon: 1.0, kMax: 4 });
    const sparse = SparseModel.load(threshold.dir, { threads: 1 });
    expect(relError(await sparse.logits(ids), reference(threshold.loaded, ids))).toBeLessThan(1e-4);
    await sparse.dispose();
  });

  test('the routing computed one block early is the reference routing of that layer, and the layer uses exactly it', async () => {
    const { dir, loaded } = plan('megrez-early', 'f32', 2, megrez);
    const model = SparseModel.load(dir, { threads: 2 });
    model.resetStats();
    await model.logits(ids);
    const early = model.earlyRouting();
    expect(early.map((r) => r.layer)).toEqual([1, 2, 3]);
    const ref = referenceForward(planWeights(loaded), ids, { routing: planRoutingRules(loaded.plan), collectSelected: true });
    const E = megrez.num_experts;
    const stats = model.routingStats();
    for (const r of early) {
      const perToken = ids.map((_, t) => Array.from(r.ids.subarray(t * E, t * E + r.count[t])));
      expect(perToken).toEqual(ref.selected![r.layer]); // same experts, same order, per token
      const needed = [...new Set(ref.selected![r.layer].flat())].sort((a, b) => a - b);
      expect(Array.from(r.experts)).toEqual(needed); // what a cache must load: nothing more, nothing less
      const counts = new Array(E).fill(0);
      perToken.flat().forEach((e) => counts[e]++);
      expect(Array.from(stats.expertCounts[r.layer])).toEqual(counts); // the selections the layer then ran
    }
    await model.dispose();
    const unshared = plan('unshared-top2', 'f32', 2);
    const plain = SparseModel.load(unshared.dir, { threads: 1 });
    await plain.logits(ids);
    expect(plain.earlyRouting()).toEqual([]);
    await plain.dispose();
  });

  test("a dense first layer (Megrez2-Preview's layout) runs as one expert behind a zero router: logits and loss equal the reference forward", async () => {
    // Layer 0 a dense MLP of width 24, layers 1 and 2 one pool, both pre-gated (layer 1 reads the dense layer's m).
    const megrezDense: ModelConfig = { ...config, num_hidden_layers: 3, first_k_dense_replace: 1, intermediate_size: 24, experts_shared_frequency: 2, pre_gate: true };
    const { dir, loaded } = plan('megrez-dense-first', 'f32', 2, megrezDense);
    const ops = loaded.plan.layers[0].ops;
    expect(ops.map((op) => op.op)).toEqual(['rms_norm', 'attention', 'residual', 'rms_norm', 'router', 'select', 'experts', 'combine', 'residual']);
    expect(ops[4]).toMatchObject({ op: 'router', dense: true });
    expect(ops[5]).toMatchObject({ mode: 'topk', k: 1, k_max: 1, renormalize: true });
    expect(ops[6]).toMatchObject({ kept: [0], intermediate_size: 24 });
    expect(loaded.header.tensors.get('layers.0.experts.gate_up')).toMatchObject({ shape: [1, 48, 40] });
    expect(loaded.header.tensors.get('layers.1.experts.gate_up')).toMatchObject({ shape: [6, 26, 40] });
    expect(loaded.header.tensors.has('layers.0.shared.gate_up')).toBe(false); // a dense layer has no shared expert
    const weights = planWeights(loaded);
    expect(Array.from(weights.get('model.layers.0.mlp.gate_proj.weight').subarray(0, 4)).some((v) => v !== 0)).toBe(true);

    const model = SparseModel.load(dir, { threads: 2 });
    const want = reference(loaded, ids);
    const got = await model.logits(ids);
    expect(relError(got, want)).toBeLessThan(1e-4);
    const loss = (logits: Float32Array) => {
      const l = nextTokenLoss(logits, ids, config.vocab_size);
      return l.sum / l.count;
    };
    expect(Math.abs(loss(got) - loss(want))).toBeLessThan(1e-5 * loss(want));
    expect(model.earlyRouting().map((r) => r.layer)).toEqual([1, 2]);
    model.setMode('dense'); // every expert of the MoE layers; the dense layer still runs its one MLP with weight 1
    expect(relError(await model.logits(ids), reference(loaded, ids, { mode: 'dense' }))).toBeLessThan(1e-4);
    await model.dispose();
    // The same through a 25 % expert cache (the dense layer's MLP is its one cached expert).
    const cached = SparseModel.load(dir, { threads: 1, expertCache: { size: '25%' } });
    expect(relError(await cached.logits(ids), want)).toBeLessThan(1e-4);
    await cached.dispose();
  });

  test('a spec whose layer names another pool than its first layer is refused by the addon, not run', () => {
    const { loaded } = plan('megrez-bad-spec', 'f32', 2, megrez);
    const spec = nativeSpec(loaded, 1);
    spec.layers[1] = { ...spec.layers[1], gateUp: spec.layers[2].gateUp }; // pool 2's tensor, same shape
    expect(() => new (loadNative().NativeModel)(spec)).toThrow(/uses expert pool 0 but names other expert tensors or another kept list/);
    const early = nativeSpec(loaded, 1);
    early.layers[0] = { ...early.layers[0], preGate: true };
    expect(() => new (loadNative().NativeModel)(early)).toThrow(/layer 0 cannot be pre-gated/);
  });
});

describe('quantized plans (GGUF Q8_0 / Q4_0 experts and attention)', () => {
  // Against the reference forward on the dequantized weights: activations in f32 throughout (the int8 GEMV that
  // batches ≤ 4 take by default is held to the f32-activation path in its own describe block).
  beforeAll(() => loadNative().setInt8GemvRows(0));
  afterAll(() => loadNative().setInt8GemvRows(4));
  // Quantized rows are whole blocks of 32 weights: hidden 64 (qkv, o, gate_up rows) and I = 32 (down rows).
  const qConfig: ModelConfig = { ...config, hidden_size: 64, moe_intermediate_size: 32, shared_expert_intermediate_size: 24 };
  const ids = tokens(23, 4);
  const quantPlan = (name: string, experts: 'q8_0' | 'q4_0' | 'bf16', attention: 'q8_0' | 'q4_0' | 'f32', dtype: 'f32' | 'bf16' = 'f32') =>
    plan(name, dtype, 2, qConfig, { dtypes: { experts, attention } });
  const meanLoss = (logits: Float32Array) => {
    const l = nextTokenLoss(logits, ids, qConfig.vocab_size);
    return l.sum / l.count;
  };

  test('the plan stores blocks as U8 rows and the runtime reads them as Q8_0 / Q4_0', async () => {
    const { dir, loaded } = quantPlan('q4-experts-q8-attn', 'q4_0', 'q8_0', 'bf16');
    expect(loaded.plan.dtypes).toEqual({ experts: 'q4_0', attention: 'q8_0' });
    expect(loaded.header.tensors.get('layers.0.experts.gate_up')).toMatchObject({ dtype: 'U8', shape: [6, 64, 2 * 18] });
    expect(loaded.header.tensors.get('layers.0.experts.down')).toMatchObject({ dtype: 'U8', shape: [6, 64, 18] });
    expect(loaded.header.tensors.get('layers.1.attn.o')).toMatchObject({ dtype: 'U8', shape: [64, 2 * 34] });
    expect(loaded.header.tensors.get('layers.1.shared.gate_up')).toMatchObject({ dtype: 'BF16', shape: [48, 64] });
    expect(loaded.header.tensors.get('layers.1.router')).toMatchObject({ dtype: 'F32' });
    const spec = nativeSpec(loaded, 1);
    expect(spec.layers[0].gateUp).toMatchObject({ dtype: 'Q4_0', shape: [6, 64, 64] });
    const model = SparseModel.load(dir, { threads: 1 });
    expect(relError(await model.logits(ids), reference(loaded, ids))).toBeLessThan(1e-4);
    await model.dispose();
  });

  test('a q8 plan: native loss equals the reference forward on the dequantized weights (1e-5), and is near f32 (1%)', async () => {
    const q8 = quantPlan('q8-all', 'q8_0', 'q8_0');
    const f32 = plan('q8-all-f32', 'f32', 2, qConfig);
    const model = SparseModel.load(q8.dir, { threads: 2 });
    const base = SparseModel.load(f32.dir, { threads: 2 });
    for (const mode of ['plan', 'dense'] as const) {
      if (mode === 'dense') {
        model.setMode('dense');
        base.setMode('dense');
      }
      const want = mode === 'dense' ? reference(q8.loaded, ids, { mode: 'dense' }) : reference(q8.loaded, ids);
      const got = await model.logits(ids);
      // Dequantized weights are exact in f32, so only the summation order differs from the reference.
      expect(relError(got, want)).toBeLessThan(1e-4);
      const score = await model.score(ids, { context: ids.length });
      expect(Math.abs(score.loss - meanLoss(want)) / meanLoss(want)).toBeLessThan(1e-5);
      if (mode === 'dense') {
        // Q8_0 moves each weight by at most 1/254 of its block's largest: the dense logits by ~1%, the loss far less.
        const full = await base.logits(ids);
        expect(relError(got, full)).toBeLessThan(3e-2);
        expect(Math.abs(meanLoss(got) - meanLoss(full)) / meanLoss(full)).toBeLessThan(1e-2);
      }
    }
    await model.dispose();
    await base.dispose();
  });

  test('q4 experts: the reference on the dequantized weights (1e-4), and a looser distance to f32 (Q4_0 steps are amax/8)', async () => {
    const q4 = quantPlan('q4-experts', 'q4_0', 'f32');
    const f32 = plan('q4-experts-f32', 'f32', 2, qConfig);
    const model = SparseModel.load(q4.dir, { threads: 2 });
    const base = SparseModel.load(f32.dir, { threads: 2 });
    model.setMode('dense');
    base.setMode('dense');
    const got = await model.logits(ids);
    expect(relError(got, reference(q4.loaded, ids, { mode: 'dense' }))).toBeLessThan(1e-4);
    const full = await base.logits(ids);
    const drift = relError(got, full);
    expect(drift).toBeGreaterThan(1e-3); // the weights did change
    expect(drift).toBeLessThan(0.25);
    expect(Math.abs(meanLoss(got) - meanLoss(full)) / meanLoss(full)).toBeLessThan(5e-2);
    await model.dispose();
    await base.dispose();
  });
});

describe('the int8 GEMV end to end (batches ≤ 4 over quantized weights quantize their activations)', () => {
  // Windows of 4 tokens: every matrix product of every forward is a GEMV of ≤ 4 rows (attention, shared and routed
  // experts), so with the int8 path on every quantized product computes from Q8 activations.
  const qConfig: ModelConfig = { ...config, hidden_size: 64, moe_intermediate_size: 64, shared_expert_intermediate_size: 24 };
  const windows = Array.from({ length: 12 }, (_, i) => tokens(4, 100 + i));
  afterEach(() => loadNative().setInt8GemvRows(4));

  test('a q4 plan (experts and attention): loss within 2e-3 relative of the f32-activation path, logits within 2e-2', async () => {
    const q4 = plan('int8-q4', 'f32', 2, qConfig, { dtypes: { experts: 'q4_0', attention: 'q4_0' } });
    const model = SparseModel.load(q4.dir, { threads: 2 });
    const addon = loadNative();
    expect(addon.setInt8GemvRows(0)).toBe(0);
    const f32act = await model.scoreSequences(windows);
    const f32logits = await model.logits(windows[0]);
    expect(addon.setInt8GemvRows(4)).toBe(4);
    const int8 = await model.scoreSequences(windows);
    const int8logits = await model.logits(windows[0]);
    // Rounding each activation to its Q8 code moves a product by nMSE ≈ 2e-5 (kernel_tests.cpp, test_int8_error),
    // ~0.5% rms of an output; through two layers the logits move by a few 1e-3 of their scale, the loss far less.
    const drift = relError(int8logits, f32logits);
    expect(drift).toBeGreaterThan(0); // the int8 path did run
    expect(drift).toBeLessThan(2e-2);
    expect(Math.abs(int8.loss - f32act.loss) / f32act.loss).toBeLessThan(2e-3);
    // and the f32-activation path is still the reference forward on the dequantized weights
    expect(relError(f32logits, reference(q4.loaded, windows[0]).subarray(0, f32logits.length))).toBeLessThan(1e-4);
    await model.dispose();
  });
});

describe('affine Q3_A / Q2_A plans (3- and 2-bit experts and attention)', () => {
  // Against the reference forward on the dequantized weights: activations in f32 throughout (the int8 GEMV that
  // batches ≤ 4 take by default is held to the f32-activation path in its own describe block).
  beforeAll(() => loadNative().setInt8GemvRows(0));
  afterAll(() => loadNative().setInt8GemvRows(4));
  // Q3_A / Q2_A rows are whole blocks of 64 weights: hidden 64 (qkv, o, gate_up rows) and I = 64 (down rows).
  const aConfig: ModelConfig = { ...config, hidden_size: 64, moe_intermediate_size: 64, shared_expert_intermediate_size: 24 };
  const ids = tokens(23, 4);
  const nmse = (a: Float32Array, b: Float32Array) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < a.length; i++) (num += (a[i] - b[i]) ** 2), (den += b[i] ** 2);
    return num / den;
  };

  test('the plan stores 28- and 20-byte blocks as U8 rows and the runtime reads them as Q3_A / Q2_A', async () => {
    const { dir, loaded } = plan('q3-experts-q2-attn', 'bf16', 2, aConfig, { dtypes: { experts: 'q3_a', attention: 'q2_a' } });
    expect(loaded.plan.dtypes).toEqual({ experts: 'q3_a', attention: 'q2_a' });
    expect(loaded.header.tensors.get('layers.0.experts.gate_up')).toMatchObject({ dtype: 'U8', shape: [6, 128, 28] });
    expect(loaded.header.tensors.get('layers.0.experts.down')).toMatchObject({ dtype: 'U8', shape: [6, 64, 28] });
    expect(loaded.header.tensors.get('layers.1.attn.o')).toMatchObject({ dtype: 'U8', shape: [64, 20] });
    expect(loaded.header.tensors.get('layers.1.shared.gate_up')).toMatchObject({ dtype: 'BF16', shape: [48, 64] });
    const spec = nativeSpec(loaded, 1);
    expect(spec.layers[0].gateUp).toMatchObject({ dtype: 'Q3_A', shape: [6, 128, 64] });
    expect(spec.layers[0].qkv).toMatchObject({ dtype: 'Q2_A', shape: [128, 64] });
    const model = SparseModel.load(dir, { threads: 1 });
    expect(relError(await model.logits(ids), reference(loaded, ids))).toBeLessThan(1e-4);
    await model.dispose();
  });

  test('experts at q8/q4/q3/q2: the reference on the dequantized weights (1e-4); logits near f32, further at fewer bits', async () => {
    const f32 = plan('affine-f32', 'f32', 2, aConfig);
    const base = SparseModel.load(f32.dir, { threads: 2 });
    base.setMode('dense'); // every expert runs: quantization cannot change the selection, only the weights
    const full = await base.logits(ids);
    await base.dispose();
    const drift: Record<string, number> = {};
    for (const experts of ['q8_0', 'q4_0', 'q3_a', 'q2_a'] as const) {
      const q = plan(`affine-experts-${experts}`, 'f32', 2, aConfig, { dtypes: { experts, attention: 'f32' } });
      const model = SparseModel.load(q.dir, { threads: 2 });
      model.setMode('dense');
      const got = await model.logits(ids);
      expect(relError(got, reference(q.loaded, ids, { mode: 'dense' }))).toBeLessThan(1e-4);
      drift[experts] = nmse(got, full);
      await model.dispose();
    }
    // The weights' nMSE (test/plan/quantize.test.ts: 3e-5, 7e-3, 3e-2, 0.11) reaches the logits damped by the
    // residual stream (the experts are one term of it): measured 2.3e-7, 6.5e-5, 2.4e-4, 7.1e-4. Bounds 4× those.
    expect(drift.q2_a).toBeGreaterThan(drift.q3_a);
    expect(drift.q3_a).toBeGreaterThan(drift.q4_0);
    expect(drift.q4_0).toBeGreaterThan(drift.q8_0);
    expect(drift.q3_a).toBeLessThan(1e-3);
    expect(drift.q2_a).toBeLessThan(3e-3);
  });
});
