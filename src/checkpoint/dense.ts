import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { configProblems, fromHfConfig, ModelConfig, toHfConfig } from '../model/config';
import { denseTensors } from '../plan/tensor_table';
import { readSafetensors, writeSafetensors } from './safetensors';
import { writeJsonAtomic } from './atomic';

/**
 * The dense checkpoint folder (docs/design.md §2): HF Qwen2-MoE config and weights, tokenizer files, and for resume
 * the trainer state and AdamW moments.
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

export interface DenseCheckpoint {
  dir: string;
  config: ModelConfig;
  hfConfig: Record<string, unknown>;
  /** Qwen2-MoE tensor by name, float32 */
  tensors: Map<string, Float32Array>;
  trainerState?: TrainerState;
  optimizer?: { expAvg: Map<string, Float32Array>; expAvgSq: Map<string, Float32Array> };
}

export const files = {
  config: 'config.json',
  model: 'model.safetensors',
  optimizer: 'optimizer.safetensors',
  trainerState: 'trainer_state.json',
  generation: 'generation_config.json',
};

export function saveDenseCheckpoint(dir: string, input: DenseCheckpointInput): void {
  fs.mkdirSync(dir, { recursive: true });
  const checkpointId = crypto.randomBytes(8).toString('hex');
  const eos = input.tokenizer?.eosId;
  const tokenIds = eos === undefined ? {} : { eos_token_id: eos, bos_token_id: eos };
  if (input.tokenizer) input.tokenizer.save(dir);
  writeJsonAtomic(path.join(dir, files.generation), { ...tokenIds, do_sample: true, temperature: 1.0, top_p: 1.0 });
  writeJsonAtomic(path.join(dir, files.config), toHfConfig(input.config, { ...tokenIds, ...input.configExtra }));
  const f32 = (t: NamedTensor) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: t.data });
  const metadata = { format: 'pt', checkpoint_id: checkpointId };
  writeSafetensors(path.join(dir, files.model), input.tensors.map(f32), metadata);
  if (input.optimizerState) {
    const moments = [
      ...input.optimizerState.expAvg.map((t) => f32({ ...t, name: t.name + '.exp_avg' })),
      ...input.optimizerState.expAvgSq.map((t) => f32({ ...t, name: t.name + '.exp_avg_sq' })),
    ];
    writeSafetensors(path.join(dir, files.optimizer), moments, metadata);
  }
  if (input.trainerState) {
    writeJsonAtomic(path.join(dir, files.trainerState), { ...input.trainerState, checkpoint_id: checkpointId });
  }
}

/** Parses a JSON file, or throws a one-line UserError naming it. */
function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UserError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    const value = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value;
  } catch (error) {
    throw new UserError(`${file}: not a valid JSON object (${(error as Error).message})`);
  }
}

/** Reads and checks every expected tensor of a safetensors file, by name and shape; errors name file and tensor. */
function readExpected(file: string, expected: { name: string; shape: number[]; optional?: boolean }[]): { tensors: Map<string, Float32Array>; metadata: Record<string, string> } {
  let reader: ReturnType<typeof readSafetensors>;
  try {
    reader = readSafetensors(file);
  } catch (error) {
    throw new UserError((error as Error).message.includes(file) ? (error as Error).message : `${file}: ${(error as Error).message}`);
  }
  const tensors = new Map<string, Float32Array>();
  for (const want of expected) {
    const info = reader.header.tensors.get(want.name);
    if (!info) {
      if (want.optional) continue;
      throw new UserError(`${file}: missing tensor ${want.name} (expected shape [${want.shape}])`);
    }
    if (info.shape.length !== want.shape.length || info.shape.some((v, i) => v !== want.shape[i])) {
      throw new UserError(`${file}: tensor ${want.name} has shape [${info.shape}], expected [${want.shape}]`);
    }
    if (!['F32', 'F16', 'BF16'].includes(info.dtype)) {
      throw new UserError(`${file}: tensor ${want.name} has dtype ${info.dtype}, expected F32, F16 or BF16`);
    }
    try {
      tensors.set(want.name, reader.get(want.name));
    } catch (error) {
      throw new UserError(`${file}: tensor ${want.name}: ${(error as Error).message}`);
    }
  }
  return { tensors, metadata: reader.header.metadata };
}

/**
 * Loads and validates a dense checkpoint folder: config.json (a usable qwen2_moe config) and every expected tensor;
 * with `forResume`, also trainer_state.json and optimizer.safetensors, which must belong to the same save.
 */
export function loadDenseCheckpoint(dir: string, options: { forResume?: boolean } = {}): DenseCheckpoint {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UserError(`${dir}: no such checkpoint folder`);
  const configFile = path.join(dir, files.config);
  const hfConfig = readJson(configFile);
  if (hfConfig.model_type !== 'qwen2_moe') {
    throw new UserError(`${configFile}: model_type is ${JSON.stringify(hfConfig.model_type)}, expected "qwen2_moe"`);
  }
  const config = fromHfConfig(hfConfig);
  const problems = configProblems(config);
  if (problems.length) throw new UserError(`${configFile}: ${problems[0]}`);

  const pieces = denseTensors(config).map((t) => ({
    name: t.name,
    shape: t.shape,
    // HF models without shared experts may omit the (inert) zero gate.
    optional: t.zero === true,
  }));
  const modelFile = path.join(dir, files.model);
  const model = readExpected(modelFile, pieces);
  const checkpoint: DenseCheckpoint = { dir, config, hfConfig, tensors: model.tensors };
  if (!options.forResume) return checkpoint;

  const stateFile = path.join(dir, files.trainerState);
  const state = readJson(stateFile) as unknown as TrainerState;
  if (!Number.isInteger(state.step) || state.step < 0 || typeof state.recipe_hash !== 'string') {
    throw new UserError(`${stateFile}: missing or invalid "step" / "recipe_hash"`);
  }
  const optimizerFile = path.join(dir, files.optimizer);
  const moments = readExpected(optimizerFile, [
    ...pieces.map((p) => ({ ...p, name: p.name + '.exp_avg' })),
    ...pieces.map((p) => ({ ...p, name: p.name + '.exp_avg_sq' })),
  ]);
  for (const [file, metadata] of [[modelFile, model.metadata], [optimizerFile, moments.metadata]] as const) {
    if (metadata.checkpoint_id !== state.checkpoint_id) {
      throw new UserError(`${file}: belongs to a different save than ${stateFile} (an interrupted save?); cannot resume from it`);
    }
  }
  const split = (suffix: string) =>
    new Map([...moments.tensors].filter(([n]) => n.endsWith(suffix)).map(([n, v]) => [n.slice(0, -suffix.length), v]));
  checkpoint.trainerState = state;
  checkpoint.optimizer = { expAvg: split('.exp_avg'), expAvgSq: split('.exp_avg_sq') };
  return checkpoint;
}
