/**
 * The report's llama.cpp column (src/report/llama_cpp_column.ts): pairing with dsmoe's rows, the markdown section,
 * the reason given when node-llama-cpp is not there, and — where it is installed — a real run on a random-init plan.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { compare, measureLlamaCpp, type LlamaCppColumn, type LlamaCppRow } from '../../src/report/llama_cpp_column';
import { llamaCppAvailability } from '../../src/report/peer_llama_cpp';
import { llamaCppSection } from '../../src/report/report_markdown';
import type { ReportJson } from '../../src/report/report_json';
import type { ThroughputRow } from '../../src/report/throughput';
import { writeRandomPlan } from '../../src/plan/random_plan';
import { removeTempDirs, tempDir, tinyConfig } from '../helpers/dense_fixtures';

afterAll(removeTempDirs);

function ours(mode: 'dense' | 'sparse', phase: 'prefill' | 'decode', batch: number, tokensPerS: number): ThroughputRow {
  return { mode, phase, batch, tokens_per_s: tokensPerS, p50_ms: 1, p95_ms: 1, mean_ms: 1, samples: 1, repeat_mean_ms: [1] };
}

const llamaRows: LlamaCppRow[] = [
  { mode: 'sparse', sequences: 1, prompt_tokens_per_s: 400, decode_tokens_per_s: 50 },
  { mode: 'dense', sequences: 1, prompt_tokens_per_s: 200, decode_tokens_per_s: 20 },
  { mode: 'sparse', sequences: 4, prompt_tokens_per_s: 800, decode_tokens_per_s: 120 },
];
const ourRows = [ours('sparse', 'decode', 1, 100), ours('dense', 'decode', 1, 25), ours('sparse', 'prefill', 1, 1000), ours('dense', 'prefill', 1, 300), ours('sparse', 'decode', 16, 900)];

test('compare pairs each llama.cpp row with dsmoe’s row of the same mode, batch and phase', () => {
  const pairs = compare(llamaRows, ourRows);
  expect(pairs).toEqual([
    { mode: 'sparse', batch: 1, phase: 'prefill', llama_cpp_tokens_per_s: 400, dsmoe_tokens_per_s: 1000, ratio: 2.5 },
    { mode: 'sparse', batch: 1, phase: 'decode', llama_cpp_tokens_per_s: 50, dsmoe_tokens_per_s: 100, ratio: 2 },
    { mode: 'dense', batch: 1, phase: 'prefill', llama_cpp_tokens_per_s: 200, dsmoe_tokens_per_s: 300, ratio: 1.5 },
    { mode: 'dense', batch: 1, phase: 'decode', llama_cpp_tokens_per_s: 20, dsmoe_tokens_per_s: 25, ratio: 1.25 },
  ]);
});

test('the markdown section names the build and gives both engines’ dense/sparse speedups', () => {
  const column: LlamaCppColumn = {
    available: true,
    node_llama_cpp: '3.21.1',
    info: { llama_cpp_release: { repo: 'ggml-org/llama.cpp', release: 'b1234' }, build_type: 'prebuilt', gpu: false, cpu_math_cores: 2, system_info: 'CPU : AVX2 = 1 |' },
    dtype: 'bf16',
    threads: 2,
    top_k: 2,
    experts: 8,
    prompt_tokens: 16,
    decode_tokens: 8,
    gguf_bytes: 2 ** 20,
    rows: llamaRows,
    comparison: compare(llamaRows, ourRows),
  };
  const md = llamaCppSection({ llama_cpp: column } as ReportJson).join('\n');
  expect(md).toContain('node-llama-cpp 3.21.1, llama.cpp ggml-org/llama.cpp b1234 (prebuilt build, GPU off), 2 threads');
  expect(md).toContain('| sparse | 1 | 400.0 | 1000.0 | 50.0 | 100.0 | 2.00× |');
  expect(md).toContain('| sparse | 4 | 800.0 | — | 120.0 | — | — |');
  expect(md).toContain('batch 1: dsmoe 4.00×, llama.cpp 2.50×');
  expect(llamaCppSection({ llama_cpp: { available: false, reason: 'llama.cpp peer not run (--no-llama-cpp)' } } as ReportJson).join('\n')).toContain(
    'llama.cpp peer not run (--no-llama-cpp).',
  );
});

function randomPlan(): string {
  const dir = tempDir('llama-column-plan');
  const config = { ...tinyConfig, vocab_size: 300, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, num_experts: 4, moe_intermediate_size: 32 };
  writeRandomPlan(dir, config, { dtype: 'f32', seed: 3, k: 2 });
  return dir;
}

test('where DSMOE_NODE_LLAMA_CPP names a folder without node-llama-cpp, the column says so and nothing runs', () => {
  const saved = process.env.DSMOE_NODE_LLAMA_CPP;
  process.env.DSMOE_NODE_LLAMA_CPP = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-no-llama-'));
  try {
    const dir = randomPlan();
    const plan = JSON.parse(fs.readFileSync(path.join(dir, 'plan.json'), 'utf8'));
    const column = measureLlamaCpp(dir, plan, [], { threads: 1, batches: [1], promptTokens: 4, decodeTokens: 2, repeats: 1 });
    expect(column).toEqual({ available: false, reason: expect.stringMatching(/holds no node-llama-cpp/) });
  } finally {
    fs.rmSync(process.env.DSMOE_NODE_LLAMA_CPP, { recursive: true, force: true });
    if (saved === undefined) delete process.env.DSMOE_NODE_LLAMA_CPP;
    else process.env.DSMOE_NODE_LLAMA_CPP = saved;
  }
});

const availability = llamaCppAvailability();
(availability.available ? test : test.skip)(
  'with node-llama-cpp: dense and sparse rows at each batch up to 16 sequences, and the build named',
  () => {
    const dir = randomPlan();
    const plan = JSON.parse(fs.readFileSync(path.join(dir, 'plan.json'), 'utf8'));
    const column = measureLlamaCpp(dir, plan, [ours('sparse', 'decode', 1, 10)], { threads: 1, batches: [1, 2, 64], promptTokens: 8, decodeTokens: 4, repeats: 1 });
    if (!column.available) throw new Error(column.reason);
    expect(column).toMatchObject({ node_llama_cpp: '3.21.1', dtype: 'f32', top_k: 2, experts: 4, prompt_tokens: 8, decode_tokens: 4 });
    expect(column.info.llama_cpp_release.repo).toBe('ggml-org/llama.cpp');
    expect(column.rows.map((r) => [r.mode, r.sequences])).toEqual([
      ['sparse', 1],
      ['sparse', 2],
      ['dense', 1],
      ['dense', 2],
    ]);
    for (const row of column.rows) {
      expect(row.prompt_tokens_per_s).toBeGreaterThan(0);
      expect(row.decode_tokens_per_s).toBeGreaterThan(0);
    }
    expect(column.comparison).toHaveLength(1);
    expect(column.comparison[0].ratio).toBeCloseTo(10 / column.rows[0].decode_tokens_per_s, 9);
  },
  600_000,
);
