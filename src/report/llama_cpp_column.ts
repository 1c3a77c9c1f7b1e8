import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { exportGguf, type GgufDtype } from '../interop/export_gguf';
import type { PlanView } from './plan_view';
import { planTopK } from './plan_view';
import type { ThroughputRow } from './throughput';
import { llamaCppAvailability, runLlamaCpp, type LlamaCppBenchRow, type LlamaCppInfo } from './peer_llama_cpp';

/**
 * The report's llama.cpp column: the same plan exported to GGUF at the plan's dtype (`dsmoe export --format gguf`),
 * run by llama.cpp through node-llama-cpp with the same threads, prompt length and decode steps, at the report's
 * batches up to 16 as parallel sequences. "sparse" is the plan's top-k; "dense" the same file with every expert
 * used (expert_used_count = E), llama.cpp's own dense/sparse pair. Tokens per second are the best of `repeats`
 * runs; decode steps are one token per sequence per step, greedy, as dsmoe's decode rows are.
 */

export interface LlamaCppRow extends LlamaCppBenchRow {
  mode: 'dense' | 'sparse';
}

export interface LlamaCppComparison {
  mode: 'dense' | 'sparse';
  batch: number;
  phase: 'prefill' | 'decode';
  llama_cpp_tokens_per_s: number;
  dsmoe_tokens_per_s: number;
  /** dsmoe ÷ llama.cpp: > 1 means dsmoe is faster. */
  ratio: number;
}

export type LlamaCppColumn =
  | { available: false; reason: string }
  | {
      available: true;
      node_llama_cpp: string;
      info: LlamaCppInfo;
      dtype: GgufDtype;
      threads: number;
      top_k: number;
      experts: number;
      prompt_tokens: number;
      decode_tokens: number;
      gguf_bytes: number;
      rows: LlamaCppRow[];
      comparison: LlamaCppComparison[];
    };

export interface LlamaCppSettings {
  threads: number;
  batches: number[];
  promptTokens: number;
  decodeTokens: number;
  repeats: number;
  log?: (line: string) => void;
}

/** Largest parallel sequence count timed in llama.cpp (each sequence holds its own KV cache). */
export const LLAMA_CPP_MAX_SEQUENCES = 16;

export function measureLlamaCpp(planDir: string, plan: PlanView, ours: ThroughputRow[], settings: LlamaCppSettings): LlamaCppColumn {
  const availability = llamaCppAvailability();
  if (!availability.available) return availability;
  const sequences = settings.batches.filter((b) => b <= LLAMA_CPP_MAX_SEQUENCES);
  if (!sequences.length) return { available: false, reason: `no report batch is ≤ ${LLAMA_CPP_MAX_SEQUENCES} parallel sequences` };
  const topK = Math.round(Math.max(...planTopK(plan)));
  const E = plan.config.num_experts;
  const dtype = plan.dtype as GgufDtype;
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-llama-cpp-'));
  try {
    const rows: LlamaCppRow[] = [];
    let info: LlamaCppInfo | undefined;
    let version = '';
    let bytes = 0;
    for (const [mode, k] of [
      ['sparse', topK],
      ['dense', E],
    ] as const) {
      const file = path.join(folder, `${mode}.gguf`);
      settings.log?.(`exporting the plan to GGUF (${dtype}, top-${k})`);
      bytes = exportGguf(planDir, { outFile: file, dtype, topK: k }).bytes;
      settings.log?.(`llama.cpp ${mode}: ${sequences.join(', ')} sequences`);
      const answer = runLlamaCpp({
        model: file,
        threads: settings.threads,
        contextSize: settings.promptTokens + settings.decodeTokens + 1,
        ops: [
          { op: 'info' },
          { op: 'bench', promptTokens: settings.promptTokens, decodeTokens: settings.decodeTokens, sequences, repeats: settings.repeats, vocab: plan.config.vocab_size },
        ],
      });
      fs.rmSync(file, { force: true });
      if (!answer.available) return answer;
      version = answer.node_llama_cpp;
      info = answer.results[0] as LlamaCppInfo;
      for (const row of answer.results[1] as LlamaCppBenchRow[]) rows.push({ mode, ...row });
    }
    return {
      available: true,
      node_llama_cpp: version,
      info: info!,
      dtype,
      threads: settings.threads,
      top_k: topK,
      experts: E,
      prompt_tokens: settings.promptTokens,
      decode_tokens: settings.decodeTokens,
      gguf_bytes: bytes,
      rows,
      comparison: compare(rows, ours),
    };
  } catch (error) {
    return { available: false, reason: `llama.cpp peer failed: ${(error as Error).message}` };
  } finally {
    fs.rmSync(folder, { recursive: true, force: true });
  }
}

/** Pairs each llama.cpp row with dsmoe's row of the same mode, batch and phase. */
export function compare(rows: LlamaCppRow[], ours: ThroughputRow[]): LlamaCppComparison[] {
  const out: LlamaCppComparison[] = [];
  for (const row of rows) {
    for (const phase of ['prefill', 'decode'] as const) {
      const mine = ours.find((r) => r.mode === row.mode && r.batch === row.sequences && r.phase === phase);
      if (!mine) continue;
      const theirs = phase === 'prefill' ? row.prompt_tokens_per_s : row.decode_tokens_per_s;
      out.push({ mode: row.mode, batch: row.sequences, phase, llama_cpp_tokens_per_s: theirs, dsmoe_tokens_per_s: mine.tokens_per_s, ratio: mine.tokens_per_s / theirs });
    }
  }
  return out;
}
