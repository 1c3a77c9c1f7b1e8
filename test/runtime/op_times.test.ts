/**
 * The per-op timer: the arithmetic of breakdowns (exact, on made-up counters), and the native phase timer on a
 * small plan — off by default, counting every forward when on, each phase's time inside the calls' wall time, and
 * the logits unchanged by timing. Needs the addon (npm run build:native).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeRandomPlan } from '../../src/plan/random_plan';
import type { ModelConfig } from '../../src/model/config';
import { loadNative, type NativeModel } from '../../src/runtime/native';
import { nativeSpec } from '../../src/runtime/spec';
import { formatOpShares, mergeBreakdowns, NATIVE_OPS, opBreakdown, opTotalMs, type RawOpTimes } from '../../src/runtime/op_times';

const config: ModelConfig = {
  vocab_size: 300,
  hidden_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 6,
  moe_intermediate_size: 13,
  shared_expert_intermediate_size: 7, // so that every phase runs
  num_experts_per_tok: 2,
  max_position_embeddings: 32,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

function raw(forwards: number, seconds: Partial<RawOpTimes['seconds']>): RawOpTimes {
  const all = Object.fromEntries(NATIVE_OPS.map((op) => [op, 0])) as RawOpTimes['seconds'];
  return { forwards, seconds: { ...all, ...seconds } };
}

describe('op breakdowns', () => {
  test('per call milliseconds between two readings, sampling added, null when profiling is off', () => {
    const before = raw(2, { experts: 0.5, qkv: 0.1 });
    const after = raw(6, { experts: 0.9, qkv: 0.3, lm_head: 0.04 });
    const b = opBreakdown(before, after, 0.002);
    expect(b?.calls).toBe(4);
    expect(b?.ms_per_call.experts).toBeCloseTo(100, 9); // 0.4 s over 4 calls
    expect(b?.ms_per_call.qkv).toBeCloseTo(50, 9);
    expect(b?.ms_per_call.lm_head).toBeCloseTo(10, 9);
    expect(b?.ms_per_call.norm).toBe(0);
    expect(b?.ms_per_call.sampling).toBeCloseTo(0.5, 9);
    expect(opTotalMs(b!)).toBeCloseTo(160.5, 9);
    expect(opBreakdown(null, after)).toBeNull();
    expect(opBreakdown(before, null)).toBeNull();
    expect(opBreakdown(after, after)).toBeNull(); // no calls in between
    expect(opBreakdown(before, after)?.ms_per_call.sampling).toBeUndefined();
  });

  test('merging weights each interval by its calls; shares are of the call time, largest first', () => {
    const merged = mergeBreakdowns([
      { calls: 1, ms_per_call: { experts: 10, sampling: 1 } },
      { calls: 3, ms_per_call: { experts: 2 } },
    ]);
    expect(merged?.calls).toBe(4);
    expect(merged?.ms_per_call.experts).toBeCloseTo(4, 12); // (10 + 3·2) / 4
    expect(merged?.ms_per_call.sampling).toBeCloseTo(0.25, 12); // one interval sampled: its time over all calls
    expect(mergeBreakdowns([])).toBeNull();
    expect(formatOpShares({ calls: 1, ms_per_call: { qkv: 1, experts: 6, norm: 0 } }, 10)).toBe('experts 60% · qkv 10%');
  });
});

describe('the native phase timer', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-op-times-'));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  const loaded = writeRandomPlan(path.join(root, 'plan'), config, { dtype: 'bf16', seed: 3, k: 2 });

  async function run(model: NativeModel): Promise<{ logits: Float32Array[]; wallS: number }> {
    const ctx = model.newContext(1, 16);
    const logits: Float32Array[] = [];
    const t0 = process.hrtime.bigint();
    logits.push(await ctx.evaluate(Int32Array.from([5, 17, 250, 3, 99]), new Int32Array(5), Int32Array.from([0, 1, 2, 3, 4]), Int32Array.from([4])));
    for (let step = 0; step < 2; step++) {
      logits.push(await ctx.evaluate(Int32Array.from([7 + step]), new Int32Array(1), Int32Array.from([5 + step]), Int32Array.from([0])));
    }
    return { logits, wallS: Number(process.hrtime.bigint() - t0) / 1e9 };
  }

  test('off by default; on, it counts every forward, times every phase inside the calls, and changes no logit', async () => {
    const addon = loadNative();
    const plain = new addon.NativeModel(nativeSpec(loaded, 2));
    const timed = new addon.NativeModel({ ...nativeSpec(loaded, 2), profileOps: true });
    try {
      expect(plain.opTimes()).toBeNull();
      const zero = timed.opTimes();
      expect(zero?.forwards).toBe(0);
      const a = await run(plain);
      const b = await run(timed);
      for (let i = 0; i < a.logits.length; i++) expect(b.logits[i]).toEqual(a.logits[i]);
      const t = timed.opTimes() as RawOpTimes;
      expect(t.forwards).toBe(3);
      expect(Object.keys(t.seconds).sort()).toEqual([...NATIVE_OPS].sort());
      let sum = 0;
      for (const op of NATIVE_OPS) {
        expect(t.seconds[op]).toBeGreaterThan(0); // the plan has a shared expert: every phase runs
        sum += t.seconds[op];
      }
      expect(sum).toBeLessThanOrEqual(b.wallS);
      expect(plain.opTimes()).toBeNull();
    } finally {
      plain.dispose();
      timed.dispose();
    }
  });
});
