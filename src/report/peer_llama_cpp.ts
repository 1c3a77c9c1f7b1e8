import { spawnSync } from 'child_process';
import * as path from 'path';

/**
 * llama.cpp as a peer, through node-llama-cpp (pinned 3.21.1, an optional peer dependency: ≈ 730 MB with its
 * CUDA/Vulkan binaries, so it stays out of `npm ci`; see the README). node-llama-cpp is ESM-only and loads native
 * code, so it runs in a child process (scripts/peer_llama_cpp.mjs) that answers one JSON request: a crash there
 * cannot take dsmoe down, and dsmoe's CommonJS build never imports it. Where it is not installed every call
 * answers `{ available: false, reason }`.
 *
 * The script finds node-llama-cpp in `$DSMOE_NODE_LLAMA_CPP` (a folder where `npm install node-llama-cpp@3.21.1`
 * ran, or the package folder), else from the working directory like any dependency.
 */

export const LLAMA_CPP_SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'peer_llama_cpp.mjs');
export const NODE_LLAMA_CPP_VERSION = '3.21.1';

export interface LlamaCppInfo {
  llama_cpp_release: { repo: string; release: string };
  build_type: string;
  gpu: string | false;
  cpu_math_cores: number;
  system_info: string;
}

export interface LlamaCppBenchRow {
  sequences: number;
  prompt_tokens_per_s: number;
  decode_tokens_per_s: number;
}

export type LlamaCppOp =
  | { op: 'info' }
  | { op: 'tokenize'; texts: string[] }
  | { op: 'generate'; prompts: number[][]; maxTokens: number }
  | { op: 'score'; windows: number[][] }
  | { op: 'bench'; promptTokens: number; decodeTokens: number; sequences: number[]; repeats: number; vocab: number };

export interface LlamaCppRequest {
  model: string;
  threads: number;
  contextSize: number;
  ops: LlamaCppOp[];
}

export type LlamaCppAnswer =
  | { available: false; reason: string }
  | { available: true; node_llama_cpp: string; results: unknown[] };

/** Runs one request in a child process; a missing package is `available: false`, a failure inside llama.cpp throws. */
export function runLlamaCpp(request: LlamaCppRequest, timeoutMs = 600_000): LlamaCppAnswer {
  const child = spawnSync(process.execPath, [LLAMA_CPP_SCRIPT], {
    input: JSON.stringify(request),
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 256 * 2 ** 20,
    env: process.env, // explicitly: DSMOE_NODE_LLAMA_CPP as this process sees it now
  });
  if (child.error) throw new Error(`llama.cpp peer: ${child.error.message}`);
  if (child.status !== 0) {
    const tail = (child.stderr ?? '').trim().split('\n').slice(-3).join(' | ');
    throw new Error(`llama.cpp peer exited with ${child.status ?? child.signal}: ${tail}`);
  }
  try {
    return JSON.parse(child.stdout) as LlamaCppAnswer;
  } catch {
    throw new Error(`llama.cpp peer: not JSON on stdout: ${child.stdout.slice(0, 200)}`);
  }
}

/** Whether node-llama-cpp can be imported, without loading a model: `{ available: false, reason }` when not. */
export function llamaCppAvailability(): { available: true } | { available: false; reason: string } {
  const child = spawnSync(process.execPath, [LLAMA_CPP_SCRIPT, '--probe'], { encoding: 'utf8', timeout: 60_000, env: process.env });
  if (child.status !== 0) return { available: false, reason: `node-llama-cpp probe failed: ${(child.stderr ?? '').trim().split('\n').pop()}` };
  try {
    const answer = JSON.parse(child.stdout) as { available: boolean; reason?: string };
    return answer.available ? { available: true } : { available: false, reason: answer.reason ?? 'unavailable' };
  } catch {
    return { available: false, reason: `node-llama-cpp probe printed ${child.stdout.slice(0, 100)}` };
  }
}
