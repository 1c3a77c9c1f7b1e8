import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { ModelConfig } from '../../src/model/config';
import { writeRandomPlan } from '../../src/plan/random_plan';
import { ADDON_PATH } from '../../src/runtime/native';
import { nativeReportRuntime } from '../../src/report/native_report_runtime';
import { runReport } from '../../src/report/run_report';
import { REQUIRED_REPORT_FIELDS, type ReportJson } from '../../src/report/report_json';
import { idealSpeedup } from '../../src/report/cost_model';

/**
 * The report end to end on the native runtime and a tiny random-init plan (skipped when the addon is not built):
 * small batches, one repeat, so it stays fast; the checks are about consistency, not speed.
 */
const config: ModelConfig = {
  vocab_size: 257, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  num_experts: 4, moe_intermediate_size: 16, shared_expert_intermediate_size: 0, num_experts_per_tok: 2,
  max_position_embeddings: 64, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false,
};

(fs.existsSync(ADDON_PATH) ? describe : describe.skip)('report on the native runtime (tiny random plan)', () => {
  let dir: string;
  let report: ReportJson;
  let planCost: ReturnType<typeof writeRandomPlan>['plan'];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-report-native-'));
    const loaded = writeRandomPlan(path.join(dir, 'plan'), config, { dtype: 'f32', seed: 3, k: 2 });
    planCost = loaded.plan;
    let state = 12345;
    const windows = Array.from({ length: 6 }, () =>
      Int32Array.from({ length: 17 }, () => (state = (state * 1103515245 + 12345) % 2147483648) % config.vocab_size),
    );
    report = await runReport(nativeReportRuntime(1, { bandwidthBytesPerArray: 16 << 20 }), {
      kind: 'trained', sparseDir: path.join(dir, 'plan'), denseDir: null, shapeName: null, layersNote: null,
      plan: loaded.plan, outDir: path.join(dir, 'report'), threads: 1,
      throughput: { batches: [1, 2], promptLen: 4, decodeSteps: 2, repeats: 1, seed: 1 },
      quality: { windows, vocabSize: config.vocab_size, tokenBytes: () => 1, slots: 4 },
      sweep: true, epsilons: [0.5],
      referenceCheck: null,
      peer: { enabled: false, batches: [1], dtypes: ['f32'], repeats: 1, timeoutMs: 1000 },
      notes: [], progress: false,
    });
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('report.json is complete and matches the plan', () => {
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'report', 'report.json'), 'utf8'));
    for (const field of REQUIRED_REPORT_FIELDS) expect(json).toHaveProperty(field);
    expect(json.machine.memory_bandwidth_gbs).toBeGreaterThan(0);
    expect(json.machine.peak_gflops).toBeGreaterThan(0);
    expect(json.machine.threads).toBe(1);
    expect(report.ideal_speedup).toBeCloseTo(idealSpeedup(planCost), 12);
    expect(report.throughput).toHaveLength(8);
    for (const row of report.throughput) expect(row.tokens_per_s).toBeGreaterThan(0);
    expect(Number.isFinite(report.measured_speedup)).toBe(true);
  });

  test('dense mode equals top-E and the plan equals top-k; the counters see E and k experts', () => {
    const q = report.quality!;
    expect(q.dense.mean_active_experts).toBeCloseTo(4, 9);
    expect(q.sparse.mean_active_experts).toBeCloseTo(2, 9);
    const topE = report.quality_cost.find((p) => p.sweep === 'topk' && p.k === 4)!;
    expect(topE.loss).toBeCloseTo(q.dense.loss, 5);
    const top2 = report.quality_cost.find((p) => p.sweep === 'topk' && p.k === 2)!;
    expect(top2.loss).toBeCloseTo(q.sparse.loss, 5);
    expect(q.dense.tokens).toBe(6 * 16);
    expect(q.sparse.perplexity).toBeCloseTo(Math.exp(q.sparse.loss), 9);
  });

  test('writes the figures', () => {
    for (const name of ['report.md', 'throughput.svg', 'latency.svg', 'roofline.svg', 'quality_cost.svg', 'expert_load.svg']) {
      expect(fs.existsSync(path.join(dir, 'report', name))).toBe(true);
    }
  });
});
