import { UserError } from '../errors';
import { readPlan } from '../plan/read_plan';
import type { ReportRuntime } from './report_runtime';
import type { ReportJson } from './report_json';
import { runReport, type ReportOptions } from './run_report';
import { heldOutSplit } from '../data/held_out_split';
import { loadAnyTokenizer } from '../interop/hf_tokenizer';
import { windowSequences } from '../data/dataset';
import { referenceLoss } from './reference_check';
import type { MatrixDtype } from '../plan/plan_format';
import { defaultExpertDtypes } from './expert_dtype_rows';

/** Settings shared by both kinds of report (flags of `dsmoe report`). */
export interface SpeedSettings {
  outDir: string;
  batches: number[];
  threads?: number;
  repeats: number;
  promptLen?: number;
  decodeSteps?: number;
  peer: boolean;
  peerRepeats: number;
  /** Time the same plan in llama.cpp (when node-llama-cpp is installed); off unless asked. */
  llamaCpp?: boolean;
  llamaCppRepeats?: number;
  progress?: boolean;
}

export interface FolderReportRequest extends SpeedSettings {
  denseDir: string | null;
  sparseDir: string;
  recipe?: string;
  text?: string;
  evalTokens: number;
  epsilons: number[];
  sweep: boolean;
  referenceWindows: number;
  /** Rows per expert dtype (`--expert-dtypes`); default: the plan's own, then every registered quantized dtype. */
  expertDtypes?: MatrixDtype[];
}

/**
 * A trained model's report: the plan against its own dense mode on the held-out split of the recipe it was
 * trained on (or a --text file), plus (on a few windows) the dense checkpoint through the reference forward.
 */
export async function reportFromFolders(runtime: ReportRuntime, request: FolderReportRequest): Promise<ReportJson> {
  const { plan } = readPlan(request.sparseDir);
  const denseDir = request.denseDir ?? plan.source.dir;
  if (!denseDir) throw new UserError(`${request.sparseDir} records no dense source folder; pass --dense DIR`);
  const heldOut = heldOutSplit(denseDir, { recipe: request.recipe, text: request.text, tokenizer: loadAnyTokenizer(denseDir) });
  // The validation split in the trainer's windows of seq_len predictions; a text in windows of the model's context.
  // The split's windows start with the tokenizer's BOS when it puts one before prompts (imported Llama/Mistral).
  const windows = windowSequences(heldOut.windows(heldOut.recipe?.data.seq_len ?? plan.config.max_position_embeddings, request.evalTokens));
  const bos = heldOut.tokenizer.bosId;
  const bosNote = bos === undefined ? '' : `, each starting with the tokenizer's BOS (id ${bos})`;
  const maxPositions = plan.config.max_position_embeddings;
  const promptLen = request.promptLen ?? Math.max(1, Math.min(32, Math.floor(maxPositions / 2)));
  const decodeSteps = request.decodeSteps ?? Math.max(1, Math.min(16, maxPositions - promptLen));
  if (promptLen + decodeSteps > maxPositions) {
    throw new UserError(`--prompt-len ${promptLen} + --decode-steps ${decodeSteps} exceed the model's ${maxPositions} positions`);
  }
  const referenceWindows = windows.slice(0, request.referenceWindows);
  const options: ReportOptions = {
    kind: 'trained',
    sparseDir: request.sparseDir,
    denseDir,
    shapeName: null,
    layersNote: null,
    plan,
    outDir: request.outDir,
    threads: request.threads,
    throughput: { batches: request.batches, promptLen, decodeSteps, repeats: request.repeats, seed: 1 },
    quality: { windows, vocabSize: plan.config.vocab_size, tokenBytes: heldOut.tokenBytes, slots: Math.min(64, windows.length) },
    epsilons: request.sweep ? request.epsilons : [],
    sweep: request.sweep,
    referenceCheck: referenceWindows.length ? { windows: referenceWindows, referenceLoss: () => referenceLoss(denseDir, referenceWindows) } : null,
    peer: { enabled: request.peer, batches: [1, 64], dtypes: ['f32', 'bf16'], repeats: request.peerRepeats, timeoutMs: 300_000 },
    llamaCpp: { enabled: request.llamaCpp ?? false, repeats: request.llamaCppRepeats ?? 3 },
    notes: [`Quality: ${windows.reduce((n, w) => n + w.length - 1, 0)} predictions in ${windows.length} windows, each scored from position 0${bosNote}; text: ${heldOut.source}.`],
    progress: request.progress,
    expertDtypes: { dtypes: request.expertDtypes ?? defaultExpertDtypes(plan), given: request.expertDtypes !== undefined },
  };
  return runReport(runtime, options);
}
