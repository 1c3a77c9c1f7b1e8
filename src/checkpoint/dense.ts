import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { ModelConfig, toHfConfig } from '../model/config';
import { writeSafetensors } from './safetensors';
import { writeJsonAtomic } from './atomic';

/**
 * The dense checkpoint folder (docs/design.md §2): HF Qwen2-MoE config and weights, tokenizer files, and for resume
 * the trainer state and AdamW moments. `DenseCheckpoint` is what every reader returns: read_dense.ts for dsmoe's own
 * folders, src/interop for Hugging Face imports.
 *
 * Every file is written to a temporary name and renamed. trainer_state.json is written last and records a
 * `checkpoint_id` that is also in the metadata of model.safetensors and optimizer.safetensors: a save cut off
 * half-way leaves files that disagree, which resume detects instead of mixing two steps.
 */
export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface TrainerState {
  step: number; // optimizer steps done; the next batch is trainBatch(step): the data position is the step
  max_steps: number;
  recipe_hash: string;
  recipe_name: string;
  seed: number;
  tokens_seen: number;
  elapsed_s: number; // training wall time before this run segment
  lr: number; // learning rate of the last step (the schedule is a function of step)
  rng_state: unknown; // training draws no random numbers after initialisation; kept for future stochastic parts
  checkpoint_id: string;
  backend: string;
}

export interface DenseCheckpointInput {
  config: ModelConfig;
  tensors: NamedTensor[]; // Qwen2-MoE names (toCheckpointTensors)
  tokenizer?: { save(dir: string): void; eosId: number };
  trainerState?: Omit<TrainerState, 'checkpoint_id'>;
  optimizerState?: { expAvg: NamedTensor[]; expAvgSq: NamedTensor[] }; // Qwen2-MoE names
  configExtra?: Record<string, unknown>; // merged into config.json (the "dsmoe" block)
}

/** Architectures a dense checkpoint comes from: dsmoe's own Qwen2-MoE, or OLMoE, Mixtral and Megrez2 imports (src/interop). */
export const DENSE_MODEL_TYPES = ['qwen2_moe', 'olmoe', 'mixtral', 'megrez_moe'] as const;
export type DenseModelType = (typeof DENSE_MODEL_TYPES)[number];

/** How the selected experts' weights are formed: p_e as is (DS-MoE, Qwen2-MoE default) or divided by their sum. */
export type RoutingRuleName = 'softmax-unnormalized' | 'softmax-renormalized';

/**
 * A dense checkpoint, validated: every tensor the model needs is present with its shape (src/plan/tensor_table.ts
 * `denseTensors`) and finite. It is the reference forward's `ReferenceWeights` as it is.
 */
export interface DenseCheckpoint {
  dir: string;
  modelPath: string; // model.safetensors (sharded imports: the index file)
  config: ModelConfig;
  hfConfig: Record<string, unknown>;
  /** A tensor by its dense (Qwen2-MoE) name, as float32. */
  get(name: string): Float32Array;
  /** OLMoE-style q/k RMSNorm in attention (imports only). */
  qkNorm?: boolean;
  /** True when config.json asks for renormalised top-k (`norm_topk_prob: true`, Mixtral-style imports). */
  normTopkProb: boolean;
  /** sha256 (hex) of model.safetensors (sharded imports: of the index, then every shard). */
  sha256(): string;
  /** Imported Hugging Face folders: the source architecture, its routing rule, and what was adapted. */
  modelType?: DenseModelType;
  routingRule?: RoutingRuleName;
  importNotes?: string[];
  /** Read with `forResume` only: the trainer's state and the AdamW moments, under the dense names. */
  trainerState?: TrainerState;
  optimizer?: { expAvg: Map<string, Float32Array>; expAvgSq: Map<string, Float32Array> };
}

export const files = {
  config: 'config.json',
  model: 'model.safetensors',
  modelIndex: 'model.safetensors.index.json', // sharded Hugging Face weights (imports)
  optimizer: 'optimizer.safetensors',
  trainerState: 'trainer_state.json',
  generation: 'generation_config.json',
};

/** optimizer.safetensors names each AdamW moment after its parameter's dense name plus these suffixes. */
export const momentSuffix = { expAvg: '.exp_avg', expAvgSq: '.exp_avg_sq' };

/** The contents of config.json and generation_config.json of a checkpoint (also handed to the PyTorch engine). */
export function checkpointConfigFiles(
  config: ModelConfig,
  eosId: number | undefined,
  configExtra: Record<string, unknown> = {},
): { config: Record<string, unknown>; generation: Record<string, unknown> } {
  const tokenIds = eosId === undefined ? {} : { eos_token_id: eosId, bos_token_id: eosId };
  return {
    config: toHfConfig(config, { ...tokenIds, ...configExtra }),
    generation: { ...tokenIds, do_sample: true, temperature: 1.0, top_p: 1.0 },
  };
}

export function saveDenseCheckpoint(dir: string, input: DenseCheckpointInput): void {
  fs.mkdirSync(dir, { recursive: true });
  const checkpointId = crypto.randomBytes(8).toString('hex');
  if (input.tokenizer) input.tokenizer.save(dir);
  const json = checkpointConfigFiles(input.config, input.tokenizer?.eosId, input.configExtra);
  writeJsonAtomic(path.join(dir, files.generation), json.generation);
  writeJsonAtomic(path.join(dir, files.config), json.config);
  const f32 = (t: NamedTensor) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: t.data });
  const metadata = { format: 'pt', checkpoint_id: checkpointId };
  writeSafetensors(path.join(dir, files.model), input.tensors.map(f32), metadata);
  if (input.optimizerState) {
    const moments = [
      ...input.optimizerState.expAvg.map((t) => f32({ ...t, name: t.name + momentSuffix.expAvg })),
      ...input.optimizerState.expAvgSq.map((t) => f32({ ...t, name: t.name + momentSuffix.expAvgSq })),
    ];
    writeSafetensors(path.join(dir, files.optimizer), moments, metadata);
  }
  if (input.trainerState) {
    writeJsonAtomic(path.join(dir, files.trainerState), { ...input.trainerState, checkpoint_id: checkpointId });
  }
}
