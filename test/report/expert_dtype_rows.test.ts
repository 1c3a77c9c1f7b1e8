/**
 * The report's rows per expert bit-width: the flag's parsing and defaults (from the registered dtype list), the
 * bytes each row is charged, and end to end on the native runtime — a converted bf16 plan of a small seeded model
 * scored at bf16, q8_0 and q4_0 on the held-out split, written to report.json, report.md and an SVG.
 */
import * as fs from 'fs';
import * as path from 'path';
import yargs from 'yargs';
import { convertCommand } from '../../src/cli/commands/convert';
import type { ModelConfig } from '../../src/model/config';
import { CLASS_DTYPE_FLAGS, isQuantized, matrixDtypeOfFlag } from '../../src/plan/dtype';
import { planCost } from '../../src/plan/cost';
import { defaultExpertDtypes, parseExpertDtypes, resolveExpertDtypes, viewAtExpertDtype } from '../../src/report/expert_dtype_rows';
import { nativeReportRuntime } from '../../src/report/native_report_runtime';
import type { PlanView } from '../../src/report/plan_view';
import { reportFromFolders } from '../../src/report/report_from_folders';
import type { ReportJson } from '../../src/report/report_json';
import type { EvaluationContext, RoutingOverride, RoutingStats } from '../../src/report/engine';
import type { ReportRuntime } from '../../src/report/report_runtime';
import { runReport } from '../../src/report/run_report';
import type { MatrixDtype } from '../../src/plan/plan_format';
import { randomDenseWeights, removeTempDirs, tempDir, tinyConfig, writeDenseFolder } from '../helpers/dense_fixtures';
import { recordRecipe, writeTestRecipe } from '../helpers/recipe_fixtures';

afterAll(removeTempDirs);

// Hidden and expert sizes of 32: one block per row, so every quantized dtype can store the experts.
const config: ModelConfig = { ...tinyConfig, hidden_size: 32, moe_intermediate_size: 32, num_attention_heads: 2, num_key_value_heads: 1 };

function viewOf(c: ModelConfig, dtype: 'f32' | 'bf16'): PlanView {
  const E = c.num_experts;
  return {
    config: c,
    dtype,
    strategy: { name: 'topk', k: 2 },
    layers: [0, 1].map((index) => ({ index, ops: [{ op: 'select', mode: 'topk', k: 2 }, { op: 'experts', kept: [0, 1, 2, 3] }] })),
    calibration: null,
    cost: planCost(c, dtype, [E, E], [2, 2]),
  };
}

describe('--expert-dtypes', () => {
  test('takes the convert flags and plan.json names; none is no rows; anything else names the flag and the choices', () => {
    expect(parseExpertDtypes('--expert-dtypes', 'bf16,q8,q4')).toEqual(['bf16', 'q8_0', 'q4_0']);
    expect(parseExpertDtypes('--expert-dtypes', 'q4_0, q4 ,f32')).toEqual(['q4_0', 'f32']);
    expect(parseExpertDtypes('--expert-dtypes', 'none')).toEqual([]);
    expect(() => parseExpertDtypes('--expert-dtypes', 'bf16,q5')).toThrow(`--expert-dtypes: unknown dtype "q5" (expected a list of ${CLASS_DTYPE_FLAGS.join(', ')}, or none)`);
  });

  test('default: the plan\'s expert dtype, then every quantized dtype the dtype list registers', () => {
    const quantized = CLASS_DTYPE_FLAGS.map(matrixDtypeOfFlag).filter(isQuantized);
    expect(quantized).toEqual(expect.arrayContaining(['q8_0', 'q4_0']));
    expect(defaultExpertDtypes({ dtype: 'bf16' })).toEqual(['bf16', ...quantized]);
    expect(defaultExpertDtypes({ dtype: 'bf16', dtypes: { experts: 'q4_0', attention: 'bf16' } })).toEqual(['q4_0', ...quantized.filter((d) => d !== 'q4_0')]);
  });

  test('the plan\'s own dtype runs first; a shape whose rows do not fill blocks is an error when named, a note by default', () => {
    expect(resolveExpertDtypes(viewOf(config, 'bf16'), ['q4_0', 'bf16'], true).dtypes).toEqual(['bf16', 'q4_0']);
    const odd = viewOf(tinyConfig, 'f32'); // hidden 8, experts 6 wide
    expect(() => resolveExpertDtypes(odd, ['f32', 'q8_0'], true)).toThrow('--expert-dtypes: experts at q8_0: blocks of 32 weights need rows of a multiple of 32, but config.hidden_size is 8');
    const quiet = resolveExpertDtypes(odd, ['f32', 'q8_0'], false);
    expect(quiet.dtypes).toEqual(['f32']);
    expect(quiet.notes).toEqual(['No row for experts at q8_0: experts at q8_0: blocks of 32 weights need rows of a multiple of 32, but config.hidden_size is 8.']);
  });

  test('a row is charged the experts at its dtype and everything else as the plan stores it', () => {
    const bf16 = viewOf(config, 'bf16');
    const q4 = viewAtExpertDtype(bf16, 'q4_0');
    const expertWeightsPerToken = 2 * 2 * 3 * 32 * 32; // 2 layers × k=2 × gate, up, down
    expect(bf16.cost.active_weight_bytes_per_token - q4.cost.active_weight_bytes_per_token).toBeCloseTo(expertWeightsPerToken * (2 - 18 / 32), 6);
    expect(q4.dtypes).toEqual({ experts: 'q4_0', attention: 'bf16' });
    expect(viewAtExpertDtype(q4, 'bf16')).not.toHaveProperty('dtypes');
  });
});

describe('rows per expert dtype on the native runtime', () => {
  const root = tempDir('expert-dtypes');
  const recipe = writeTestRecipe(root, 'expert-dtypes-test');
  const dense = path.join(root, 'dense');
  const sparse = path.join(root, 'sparse');
  const out = tempDir('expert-dtypes-out');
  let report: ReportJson;

  beforeAll(async () => {
    writeDenseFolder(dense, config, randomDenseWeights(config, 43, 0.1));
    recordRecipe(dense, recipe);
    const argv = ['convert', dense, '--out', sparse, '--strategy', 'topk', '--k', '2', '--dtype', 'bf16', '--calib-tokens', '0', '--quiet'];
    const write = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      await yargs(argv).command(convertCommand).strict().parseAsync();
    } finally {
      write.mockRestore();
    }
    report = await reportFromFolders(nativeReportRuntime(1, { bandwidthBytesPerArray: 1 << 20 }), {
      outDir: out, batches: [1], threads: 1, repeats: 1, promptLen: 4, decodeSteps: 2, peer: false, peerRepeats: 1,
      progress: false, denseDir: null, sparseDir: sparse, evalTokens: 256, epsilons: [], sweep: false, referenceWindows: 0,
      expertDtypes: ['q4_0', 'q8_0', 'bf16'],
    });
  }, 120_000);

  test('one row per dtype, the plan first; bytes per token and file bytes fall with the bits', () => {
    const rows = report.expert_dtypes!;
    expect(rows.map((r) => [r.expert_dtype, r.source])).toEqual([['bf16', 'plan'], ['q4_0', 're-encoded'], ['q8_0', 're-encoded']]);
    const [bf16, q4, q8] = rows;
    expect([bf16.bits_per_weight, q8.bits_per_weight, q4.bits_per_weight]).toEqual([16, 8.5, 4.5]);
    expect(bf16.weight_bytes_per_token).toBe(report.cost.sparse.weight_bytes_per_token);
    expect(q8.weight_bytes_per_token).toBeLessThan(bf16.weight_bytes_per_token);
    expect(q4.weight_bytes_per_token).toBeLessThan(q8.weight_bytes_per_token);
    expect(q4.expert_bytes).toBe((2 * 4 * 3 * 32 * 32 * 18) / 32);
    for (const row of rows) {
      expect(row.decode_tokens_per_s).toBeCloseTo(1000 / row.decode_p50_ms, 9);
      expect(row.decode_gbs).toBeCloseTo((row.weight_bytes_per_token * row.decode_tokens_per_s) / 1e9, 12);
      expect(row.fraction_of_bandwidth).toBeCloseTo(row.decode_gbs / report.memory_bandwidth_gbs, 12);
    }
  });

  test('the plan\'s row is its sparse quality; q8_0 stays within 0.5% of bf16 perplexity, q4_0 within 5% and further off', () => {
    const [bf16, q4, q8] = report.expert_dtypes!;
    expect(bf16.quality!.loss).toBe(report.quality!.sparse.loss);
    expect(q8.quality!.tokens).toBe(bf16.quality!.tokens);
    expect(bf16.perplexity_change).toBe(0);
    expect(q8.perplexity_change).toBeCloseTo(q8.quality!.perplexity / bf16.quality!.perplexity - 1, 12);
    expect(q8.quality!.loss).not.toBe(bf16.quality!.loss); // the copy really runs other weights
    expect(Math.abs(q8.perplexity_change!)).toBeLessThan(0.005);
    expect(Math.abs(q4.perplexity_change!)).toBeLessThan(0.05);
    expect(Math.abs(q4.perplexity_change!)).toBeGreaterThan(Math.abs(q8.perplexity_change!));
  });

  test('report.md has the table, the SVG is drawn, and the scratch copies are gone', () => {
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain('## Quality–cost by expert bit-width');
    expect(md).toMatch(/\| bf16 \(the plan\) \| 16\.00 \|/);
    expect(md).toMatch(/\| q4_0 \| 4\.50 \|/);
    expect(report.figures).toContain('expert_dtypes.svg');
    expect(fs.readFileSync(path.join(out, 'expert_dtypes.svg'), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>$/);
    expect(fs.readdirSync(out).filter((name) => name.startsWith('.plan-'))).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')).expert_dtypes).toEqual(report.expert_dtypes);
  });
});

/**
 * The rows within `--budget`, over a scripted runtime (no native code): each plan directory is a context whose
 * logits put more mass on the right token for more bits, on a virtual clock. A budget with time left runs every
 * row on its own copy and disposes of it; a budget already spent skips every row with a note and makes no copy.
 */
describe('rows per expert dtype within a budget (scripted runtime)', () => {
  const V = 16;
  let virtualMs = 0;
  const sharpness: Record<string, number> = { S: 3, 'S-q8_0': 2.99, 'S-q4_0': 2.9 };
  const context = (dir: string): EvaluationContext => ({
    async evaluate(tokens: Int32Array, _slots: Int32Array, _positions: Int32Array, outputRows: Int32Array, routing?: RoutingOverride): Promise<Float32Array> {
      virtualMs += 0.1 * tokens.length * (routing?.mode === 'dense' ? 4 : 1);
      const logits = new Float32Array(outputRows.length * V);
      outputRows.forEach((row, r) => (logits[r * V + ((tokens[row] + 1) % V)] = sharpness[dir]));
      return logits;
    },
    clearSlot: () => undefined,
    routingStats: (): RoutingStats => ({ tokens: 0, expertCounts: [new Int32Array(4), new Int32Array(4)], activeExperts: 0 }),
    resetStats: () => undefined,
  });
  const opened: string[] = [];
  const runtime: ReportRuntime = {
    probe: { cpuInfo: () => ({ simd: 'avx2', threads: 2, cuda: false }), memoryBandwidthGBs: () => 10, peakGflops: () => 100 },
    openPlan: async (dir) => {
      opened.push(dir);
      return { context: context(dir), threads: 2, dispose: () => undefined };
    },
  };
  const windows = Array.from({ length: 4 }, (_, w) => Int32Array.from({ length: 9 }, (_, t) => (w + t) % V));
  const run = async (startedAt: number) => {
    const made: string[] = [];
    const disposed: string[] = [];
    const out = tempDir('expert-dtypes-budget');
    const report = await runReport(runtime, {
      kind: 'trained', sparseDir: 'S', denseDir: 'D', shapeName: null, layersNote: null, plan: viewOf({ ...config, vocab_size: V }, 'f32'), outDir: out,
      throughput: { batches: [1], promptLen: 4, decodeSteps: 2, repeats: 1, seed: 1, clock: () => virtualMs },
      quality: { windows, vocabSize: V, tokenBytes: () => 1, slots: 4 },
      sweep: false, epsilons: [], referenceCheck: null,
      peer: { enabled: false, batches: [1], dtypes: ['f32'], repeats: 1, timeoutMs: 1000 },
      notes: [], progress: false,
      budget: {
        minutes: 1, startedAt, candidateBatches: [1], maxRepeats: 1,
        layers: null, setupFits: true, peerReserveMs: 0,
      },
      expertDtypes: {
        dtypes: ['f32', 'q8_0', 'q4_0'],
        given: true,
        planAt: (dtype: MatrixDtype) => {
          made.push(dtype);
          return { dir: `S-${dtype}`, dispose: () => disposed.push(dtype) };
        },
      },
    });
    return { report, made, disposed };
  };

  test('time left: every row runs on its own copy, which is disposed of; quality falls with the bits', async () => {
    opened.length = 0;
    const { report, made, disposed } = await run(Date.now());
    expect(report.expert_dtypes!.map((r) => r.expert_dtype)).toEqual(['f32', 'q8_0', 'q4_0']);
    expect(made).toEqual(['q8_0', 'q4_0']);
    expect(disposed).toEqual(['q8_0', 'q4_0']);
    expect(opened).toEqual(['S', 'S-q8_0', 'S-q4_0']);
    const [f32, q8, q4] = report.expert_dtypes!;
    expect(f32.quality!.loss).toBe(report.quality!.sparse.loss);
    expect(q8.quality!.loss).toBeGreaterThan(f32.quality!.loss);
    expect(q4.quality!.loss).toBeGreaterThan(q8.quality!.loss);
    expect(report.notes.join('\n')).not.toContain('skipped');
  });

  test('a spent budget skips every row with a note and makes no copy', async () => {
    const { report, made } = await run(Date.now() - 120_000);
    expect(report.expert_dtypes).toEqual([]);
    expect(made).toEqual([]);
    expect(report.notes.filter((n) => n.startsWith('Row for experts at'))).toHaveLength(3);
    expect(report.budget!.fits).toBe(false);
  });
});
