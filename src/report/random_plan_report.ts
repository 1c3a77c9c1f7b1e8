import * as fs from 'fs';
import * as path from 'path';
import { parameterCounts, type ModelConfig } from '../model/config';
import { checkMemory, servingMemory } from '../model/memory_estimate';
import { bytesPerWeight } from '../plan/dtype';
import type { PlanDtype, LoadedPlan } from '../plan/plan_format';
import { readPlan } from '../plan/read_plan';
import { writeRandomPlan } from '../plan/random_plan';
import { planCost } from '../plan/cost';
import { PAPER_SHAPES, resolveShape } from './paper_shapes';

/**
 * `dsmoe report --shape … --random-init`: a plan of a realistic shape with random weights, for speed only. Writing
 * several GB of weights takes a while, so a plan folder from an earlier run with the same shape, dtype, k and seed
 * is reused.
 */

export interface RandomPlanRequest {
  shape: string;
  layers?: number;
  dtype: PlanDtype;
  k?: number;
  seed: number;
  planDir: string;
  /** Bytes of weights written so far and in all, while a new plan is written. */
  onProgress?: (writtenBytes: number, totalBytes: number) => void;
}

export interface RandomPlanResult {
  loaded: LoadedPlan;
  name: string;
  layersNote: string | null;
  reused: boolean;
  k: number;
}

function sameConfig(a: ModelConfig, b: ModelConfig): boolean {
  return (Object.keys(b) as (keyof ModelConfig)[]).every((key) => a[key] === b[key]);
}

/** The plan already in request.planDir when it is the one the request would write, else null. */
export function reusableRandomPlan(request: RandomPlanRequest): LoadedPlan | null {
  const resolved = resolveShape(request.shape, request.layers);
  const k = request.k ?? resolved.k;
  const config = { ...resolved.config, num_experts_per_tok: k };
  if (!fs.existsSync(path.join(request.planDir, 'plan.json'))) return null;
  try {
    const existing = readPlan(request.planDir);
    const seed = (existing.plan.source as { random_init?: { seed?: number } }).random_init?.seed;
    if (sameConfig(existing.plan.config, config) && existing.plan.dtype === request.dtype && existing.plan.strategy.k === k && seed === request.seed) {
      return existing;
    }
  } catch {
    // An unreadable or different plan is rewritten.
  }
  return null;
}

export function prepareRandomPlan(request: RandomPlanRequest): RandomPlanResult {
  const resolved = resolveShape(request.shape, request.layers);
  const k = request.k ?? resolved.k;
  const config = { ...resolved.config, num_experts_per_tok: k };
  let loaded = reusableRandomPlan(request);
  const reused = loaded !== null;
  if (!loaded) {
    // Before writing gigabytes of random weights: the plan must fit in memory to be measured at all.
    const weightBytes = parameterCounts(config).total * bytesPerWeight(request.dtype);
    checkMemory(`a random-init ${resolved.name} plan (${request.dtype})`, servingMemory(config, { weightBytes, slots: 1, maxContext: config.max_position_embeddings }));
  }
  loaded ??= writeRandomPlan(request.planDir, config, { dtype: request.dtype, seed: request.seed, k, onProgress: request.onProgress });
  const paper = PAPER_SHAPES[request.shape.toLowerCase()];
  const fullLayers = paper ? paper.config.num_hidden_layers : null;
  let layersNote: string | null = null;
  if (request.layers !== undefined && fullLayers !== null && request.layers !== fullLayers) {
    // The LM head and embedding row are a fixed per-token cost, so the ideal speedup grows with depth.
    const full = planCost({ ...config, num_hidden_layers: fullLayers }, request.dtype, Array(fullLayers).fill(config.num_experts), Array(fullLayers).fill(k));
    const fullIdeal = full.dense_weight_bytes_per_token / full.active_weight_bytes_per_token;
    layersNote =
      `Shrunk to ${request.layers} of ${resolved.name}'s ${fullLayers} layers (--layers) to fit this machine's time; ` +
      `per-layer shapes, expert count and k are the paper's. The LM head is a fixed per-token cost, so the ideal ` +
      `batch-1 speedup of the full ${fullLayers}-layer model is ${fullIdeal.toFixed(2)}× (from the same cost formula).`;
  }
  return { loaded, name: resolved.name, layersNote, reused, k };
}
