import * as fs from 'fs';
import { UserError } from '../errors';
import { checkMemory, servingMemory } from '../model/memory_estimate';
import type { LoadedPlan } from '../plan/plan_format';
import { readPlan } from '../plan/read_plan';
import { selectBackend, type Device } from './backend';
import type { NativeContext, NativeModel } from './native';
import { nativeSpec } from './spec';
import { residentWeightBytes, type ExpertCacheOptions } from './expert_cache';
import { defaultResidency, parseResidency, type Residency } from './residency';

export interface OpenPlanOptions {
  threads?: number; // 0 or absent: all hardware threads
  device?: Device; // default 'auto': CUDA when a GPU is usable, else the CPU (src/runtime/backend.ts)
  slots: number; // sequences the KV cache holds at once
  maxContext?: number; // positions per sequence; default config.max_position_embeddings
  withinTrainedContext?: boolean; // refuse a maxContext beyond max_position_embeddings (checked before allocating)
  expertCache?: ExpertCacheOptions; // read routed experts on demand into a fixed cache (absent: all resident)
  profileOps?: boolean; // time each phase of every forward (NativeModel.opTimes; src/runtime/op_times.ts)
  residency?: Residency; // how the weights are held in memory (src/runtime/residency.ts); default: defaultResidency
  /** Where a warning goes (an mlock refused by RLIMIT_MEMLOCK); default: a `warning:` line on stderr. */
  onWarning?: (message: string) => void;
}

export interface OpenedPlan {
  loaded: LoadedPlan;
  model: NativeModel;
  context: NativeContext;
  maxContext: number;
  device: string; // the device in use: 'cpu' or 'cuda (<card>)'
}

/**
 * Validates a plan folder, maps its weights into the native runtime and allocates a KV cache of `slots` sequences:
 * the one way SparseModel (one sequence), the server and the report (many) open a plan. Every failure is a
 * UserError naming the folder; nothing native is left allocated when it throws.
 */
export function openPlan(dir: string, options: OpenPlanOptions): OpenedPlan {
  const threads = options.threads ?? 0;
  if (!Number.isInteger(threads) || threads < 0 || threads > 256) throw new UserError(`threads must be an integer in 0..256, got ${options.threads}`);
  const loaded = readPlan(dir); // throws UserError naming file, field and expectation
  const config = loaded.plan.config;
  const maxContext = options.maxContext ?? config.max_position_embeddings;
  if (!Number.isInteger(maxContext) || maxContext < 1) throw new UserError(`maxContext must be a positive integer, got ${options.maxContext}`);
  if (options.withinTrainedContext && maxContext > config.max_position_embeddings) {
    throw new UserError(`max context ${maxContext} exceeds the model's max_position_embeddings ${config.max_position_embeddings}`);
  }
  const asked = options.residency === undefined ? undefined : parseResidency(options.residency);
  const backend = selectBackend(options.device); // a UserError for --device cuda without a GPU, before any mapping
  const fileBytes = fs.statSync(loaded.weightsPath).size;
  const residency = asked ?? defaultResidency(backend.name, options.expertCache !== undefined, fileBytes);
  if (backend.name === 'cuda' && options.expertCache?.directIo) {
    // on CUDA the cache's slow tier is pinned host memory (docs/cuda.md "The device expert cache"), not the file
    throw new UserError(`the expert cache's direct I/O reads the plan file on the CPU runtime; on ${backend.describe} experts come from pinned host memory: drop it or use --device cpu`);
  }
  if (options.expertCache && residency !== 'mmap') {
    throw new UserError(`--residency ${residency} holds every expert in memory, which --expert-cache exists to avoid; use one or the other`);
  }
  const spec = {
    ...nativeSpec(loaded, threads, options.expertCache), // validates the cache size (UserError naming the flag)
    ...(options.profileOps ? { profileOps: true } : {}),
    residency,
  };
  // With an expert cache on the CPU only the resident tensors and the cache's slots take memory: a plan may exceed
  // the machine. On CUDA the cache saves device memory; the host holds every expert (pinned) besides the mapping.
  const weightBytes = spec.expertCache && backend.name === 'cpu' ? residentWeightBytes(loaded.plan, fileBytes, spec.expertCache.slots) : fileBytes;
  checkMemory(dir, servingMemory(config, { weightBytes, slots: options.slots, maxContext }));
  let model: NativeModel;
  try {
    model = backend.createModel(spec);
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw new UserError(`${dir}: the ${backend.name} runtime rejected the plan: ${(error as Error).message}`);
  }
  const warning = backend.name === 'cpu' ? model.info().residencyWarning : '';
  if (warning) (options.onWarning ?? ((message) => process.stderr.write(`warning: ${message}\n`)))(warning);
  try {
    return { loaded, model, context: model.newContext(options.slots, maxContext), maxContext, device: backend.describe };
  } catch (error) {
    model.dispose();
    throw new UserError(`${dir}: cannot allocate a KV cache of ${options.slots} × ${maxContext} positions: ${(error as Error).message}`);
  }
}
