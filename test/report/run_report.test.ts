import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { ModelConfig } from '../../src/model/config';
import { planCost } from '../../src/plan/cost';
import type { PlanView } from '../../src/report/plan_view';
import type { EvaluationContext, RoutingOverride, RoutingStats } from '../../src/report/engine';
import type { ReportRuntime } from '../../src/report/report_runtime';
import { runReport } from '../../src/report/run_report';
import { REQUIRED_REPORT_FIELDS, ReportJson } from '../../src/report/report_json';
import { NATIVE_OPS, type RawOpTimes } from '../../src/runtime/op_times';

/**
 * The whole report over a scripted runtime: a context whose call time, on a virtual clock, is proportional to the
 * weights it would read (fixed part + distinct experts, like a bandwidth-bound decode) and whose logits get better
 * with more experts. Checks that report.json is complete and self-consistent and that every file is written.
 */

const E = 4;
const K = 1;
const V = 16;
const config: ModelConfig = {
  vocab_size: V, hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1,
  num_experts: E, moe_intermediate_size: 4, shared_expert_intermediate_size: 0, num_experts_per_tok: K,
  max_position_embeddings: 64, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: true,
};
const plan: PlanView = {
  config,
  dtype: 'f32',
  strategy: { name: 'topk', k: K },
  layers: [0, 1].map((index) => ({ index, ops: [{ op: 'select', mode: 'topk', k: K }, { op: 'experts', kept: [0, 1, 2, 3] }] })),
  calibration: null,
  cost: planCost(config, 'f32', [E, E], [K, K]),
};

const UNIT_MS = 0.25;
let virtualMs = 0;
const clock = () => virtualMs;

class ScriptedContext implements EvaluationContext {
  counts = [new Int32Array(E), new Int32Array(E)];
  tokens = 0;
  /** The runtime's phase counters, scripted: one unit of qkv per call, one unit of experts per distinct expert. */
  ops: RawOpTimes = { forwards: 0, seconds: Object.fromEntries(NATIVE_OPS.map((op) => [op, 0])) as RawOpTimes['seconds'] };

  private expertsFor(routing?: RoutingOverride): number {
    if (!routing) return K;
    if (routing.mode === 'dense') return E;
    if (routing.mode === 'topk') return routing.k ?? K;
    return Math.max(1, Math.min(E, Math.round(2 / (routing.epsilon ?? 0.48)))); // smaller ε keeps more experts
  }

  async evaluate(tokens: Int32Array, slots: Int32Array, positions: Int32Array, outputRows: Int32Array, routing?: RoutingOverride): Promise<Float32Array> {
    const n = this.expertsFor(routing);
    const distinct = new Set<number>();
    for (let i = 0; i < tokens.length; i++) {
      for (let j = 0; j < n; j++) {
        const e = (tokens[i] + j) % E;
        distinct.add(e);
        for (const layer of this.counts) layer[e] += 1;
      }
    }
    this.tokens += tokens.length;
    virtualMs += UNIT_MS * (1 + distinct.size);
    this.ops.forwards += 1;
    this.ops.seconds.qkv += UNIT_MS / 1e3;
    this.ops.seconds.experts += (UNIT_MS * distinct.size) / 1e3;
    // The true next token is token+1; more experts put more logit mass on it.
    const logits = new Float32Array(outputRows.length * V);
    outputRows.forEach((row, r) => (logits[r * V + ((tokens[row] + 1) % V)] = n));
    return logits;
  }
  clearSlot(): void {}
  routingStats(): RoutingStats {
    return { tokens: this.tokens, expertCounts: this.counts.map((c) => Int32Array.from(c)), activeExperts: 0 };
  }
  resetStats(): void {
    this.counts = [new Int32Array(E), new Int32Array(E)];
    this.tokens = 0;
  }
}

const runtime: ReportRuntime = {
  probe: { cpuInfo: () => ({ simd: 'avx2', threads: 2, cuda: false }), memoryBandwidthGBs: () => 10, peakGflops: () => 100 },
  openPlan: async () => {
    const context = new ScriptedContext();
    const probe = { read: () => structuredClone(context.ops), sample: (row: Float32Array) => row.indexOf(Math.max(...row)) };
    return { context, threads: 2, dispose: () => undefined, probe };
  },
};

describe('report pipeline over a scripted runtime', () => {
  let out: string;
  let report: ReportJson;
  const windows = Array.from({ length: 6 }, (_, w) => Int32Array.from({ length: 9 }, (_, t) => (w + t) % V));

  beforeAll(async () => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-report-'));
    report = await runReport(runtime, {
      kind: 'trained', sparseDir: 'S', denseDir: 'D', shapeName: null, layersNote: null, plan, outDir: out,
      throughput: { batches: [1, 2], promptLen: 4, decodeSteps: 3, repeats: 3, seed: 1, clock },
      quality: { windows, vocabSize: V, tokenBytes: () => 1, slots: 4 },
      sweep: true,
      epsilons: [0.5, 1.0],
      referenceCheck: null,
      peer: { enabled: false, batches: [1], dtypes: ['f32'], repeats: 1, timeoutMs: 1000 },
      notes: [],
      progress: false,
    });
  });

  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  test('report.json has the required fields', () => {
    const json = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    for (const field of REQUIRED_REPORT_FIELDS) expect(json).toHaveProperty(field);
    expect(json.machine).toMatchObject({ threads: 2, memory_bandwidth_gbs: 10, peak_gflops: 100 });
    expect(typeof json.machine.cpu).toBe('string');
    for (const mode of ['dense', 'sparse']) {
      expect(Object.keys(json.quality[mode])).toEqual(expect.arrayContaining(['loss', 'perplexity', 'bits_per_byte']));
      expect(json.params[mode].total).toBeGreaterThan(0);
    }
    for (const row of json.throughput) {
      expect(Object.keys(row)).toEqual(expect.arrayContaining(['mode', 'phase', 'batch', 'tokens_per_s', 'p50_ms', 'p95_ms']));
    }
  });

  test('figures are consistent with each other and with the plan', () => {
    expect(report.ideal_speedup).toBeCloseTo(plan.cost.dense_weight_bytes_per_token / plan.cost.active_weight_bytes_per_token, 12);
    expect(report.params.sparse.active_per_token).toBe(plan.cost.active_params_per_token);
    expect(report.params.dense.active_per_token).toBe(plan.cost.dense_active_params_per_token);
    expect(report.throughput).toHaveLength(2 * 2 * 2);
    for (const row of report.throughput) {
      const tokensPerCall = row.phase === 'prefill' ? row.batch * 4 : row.batch;
      expect(row.tokens_per_s).toBeCloseTo(tokensPerCall / (row.mean_ms / 1000), 6);
      expect(row.p95_ms).toBeGreaterThanOrEqual(row.p50_ms);
      expect(row.samples).toBe(row.phase === 'prefill' ? 3 : 9);
    }
    // Where the time goes: the scripted counters, per call, account for the whole call; faults are counted.
    for (const row of report.throughput) {
      expect(row.ops_ms?.qkv).toBeCloseTo(UNIT_MS, 9);
      expect((row.ops_ms?.qkv ?? 0) + (row.ops_ms?.experts ?? 0)).toBeCloseTo(row.mean_ms, 9);
      if (row.phase === 'decode') expect(row.ops_ms?.sampling).toBeGreaterThanOrEqual(0);
      else expect(row.ops_ms?.sampling).toBeUndefined();
      expect(row.page_faults?.minor).toBeGreaterThanOrEqual(0);
    }
    const decodeAt1 = (mode: string) => report.throughput.find((r) => r.mode === mode && r.phase === 'decode' && r.batch === 1);
    expect(decodeAt1('dense')?.ops_ms?.experts).toBeCloseTo(E * UNIT_MS, 9);
    expect(decodeAt1('sparse')?.ops_ms?.experts).toBeCloseTo(K * UNIT_MS, 9);
    expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('## Where the time goes');
    // The attention / MLP / rest split sums to the per-token figures of its mode, and report.md states it.
    for (const mode of ['dense', 'sparse'] as const) {
      const { attention, mlp, other } = report.cost[mode].split;
      expect(attention.params + mlp.params + other.params).toBe(report.params[mode].active_per_token);
      expect(attention.bytes + mlp.bytes + other.bytes).toBeCloseTo(report.cost[mode].weight_bytes_per_token, 6);
      expect(attention.params).toBe(report.cost.dense.split.attention.params); // plain attention: routing leaves it alone
    }
    for (const point of report.quality_cost) expect(point.active_params - point.active_attention_params - point.active_mlp_params).toBe(report.cost.sparse.split.other.params);
    expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('| mode | attention params / token | MLP params / token |');
    // scripted decode at batch 1: dense reads 1 + 4 units, sparse 1 + 1 → 2.5×
    expect(report.measured_speedup).toBeCloseTo(2.5, 12);
    const decode1 = report.throughput.find((r) => r.mode === 'sparse' && r.phase === 'decode' && r.batch === 1)!;
    expect(decode1.p50_ms).toBeCloseTo(2 * UNIT_MS, 12);
    expect(decode1.tokens_per_s).toBeCloseTo(1000 / (2 * UNIT_MS), 9);
    expect(report.speedup_efficiency).toBeCloseTo(report.measured_speedup / report.ideal_speedup, 12);
    const bw = report.bandwidth.find((b) => b.mode === 'sparse')!;
    expect(bw.fraction_of_measured).toBeCloseTo(bw.achieved_gbs / 10, 12);
  });

  test('quality: more experts score better, k = E equals dense, perplexity = exp(loss)', () => {
    const q = report.quality!;
    expect(q.dense.loss).toBeLessThan(q.sparse.loss);
    expect(q.dense.perplexity).toBeCloseTo(Math.exp(q.dense.loss), 9);
    expect(q.dense.tokens).toBe(6 * 8);
    expect(q.dense.bits_per_byte).toBeCloseTo(q.dense.loss / Math.LN2, 9);
    expect(q.sparse.mean_active_experts).toBeCloseTo(K, 9);
    const topk = report.quality_cost.filter((p) => p.sweep === 'topk');
    expect(topk.map((p) => p.k)).toEqual([1, 2, 3, 4]);
    expect(topk[3].loss).toBeCloseTo(q.dense.loss, 9);
    expect(topk[0].active_params).toBe(plan.cost.active_params_per_token);
    expect(report.quality_cost.filter((p) => p.sweep === 'threshold')).toHaveLength(2);
  });

  test('writes report.md and the SVG figures', () => {
    expect(report.figures).toEqual(['throughput.svg', 'latency.svg', 'roofline.svg', 'quality_cost.svg', 'expert_load.svg']);
    for (const figure of report.figures) expect(fs.readFileSync(path.join(out, figure), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>$/);
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain('Ideal speedup at batch 1');
    expect(md).toContain(`${report.ideal_speedup.toFixed(2)}×`);
    expect(md).toContain('PyTorch peer not run');
    expect(md).toContain('llama.cpp peer not run (--no-llama-cpp)');
    expect(md).toContain('fits in the CPU caches'); // a 6 KB model: the ideal speedup model does not apply
  });
});

describe('report to a time budget over the scripted runtime', () => {
  let out: string;
  let report: ReportJson;

  beforeAll(async () => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-report-budget-'));
    report = await runReport(runtime, {
      kind: 'random-init', sparseDir: 'S', denseDir: null, shapeName: 'scripted', layersNote: null, plan, outDir: out,
      throughput: { batches: [1, 2, 4], promptLen: 4, decodeSteps: 3, repeats: 3, seed: 1, clock },
      quality: null, sweep: false, epsilons: [], referenceCheck: null,
      peer: { enabled: false, batches: [1], dtypes: ['f32'], repeats: 1, timeoutMs: 1000 },
      notes: [],
      progress: false,
      budget: {
        minutes: 1, startedAt: Date.now(), candidateBatches: [1, 2, 4], maxRepeats: 3,
        layers: { chosen: 2, full: 2, given: false, estimated_write_ms: 0 }, setupFits: true, peerReserveMs: 0,
      },
    });
  });

  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  test('the chosen batches and repeats are the ones timed, and report.json says what was chosen', () => {
    const budget = report.budget!;
    expect(budget.batches.chosen).toEqual(report.settings.batches);
    expect(budget.repeats.chosen).toBe(report.settings.repeats);
    expect(new Set(report.throughput.map((r) => r.batch))).toEqual(new Set(report.settings.batches));
    for (const row of report.throughput) expect(row.samples).toBe(row.phase === 'prefill' ? budget.repeats.chosen : 3 * budget.repeats.chosen);
    // Virtual call times of a few ms fit a minute with room to spare: everything runs.
    expect(budget).toMatchObject({ fits: true, batches: { chosen: [1, 2, 4], given: false }, repeats: { chosen: 3, given: false } });
    // Calibration: batch 1, both modes, a prefill and two decode calls each.
    expect(budget.calibration.calls).toBe(6);
    expect(budget.elapsed_ms).toBeGreaterThan(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')).budget).toEqual(budget);
    expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('Budget 1 min: 2 of 2 layers (chosen), batches 1, 2, 4 (chosen), 3 repeats (chosen)');
  });
});
