/**
 * Reads a dense checkpoint folder in dsmoe's own layout (docs/design.md §2) and validates it completely first:
 * config.json parses and describes a usable Qwen2-MoE model, model.safetensors parses, every tensor of the table
 * (src/plan/tensor_table.ts) is there with its exact shape and a float dtype, and every value is finite. With
 * `forResume`, also trainer_state.json and optimizer.safetensors, which must belong to the same save. Hugging Face
 * folders in other layouts are read by src/interop (`readAnyDenseCheckpoint`) into the same `DenseCheckpoint`.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { configProblems, fromHfConfig } from '../model/config';
import { checkMemory, denseCheckpointMemory } from '../model/memory_estimate';
import { denseTensors, type DenseTensor } from '../plan/tensor_table';
import { files, momentSuffix, type DenseCheckpoint, type TrainerState } from './dense';
import { readJsonFile, sha256Files } from './files';
import { readSafetensors, type SafetensorsFile } from './safetensors';

const FOLDER_HOLDS = 'a dense checkpoint folder holds config.json and model.safetensors';

/** config.json of a dense folder, ours or a Hugging Face one, after checking that the folder also holds weights. */
export function readDenseConfig(dir: string): Record<string, unknown> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new UserError(`${dir}: no such checkpoint folder (not a directory; expected a dense checkpoint folder written by dsmoe train)`);
  }
  const configPath = path.join(dir, files.config);
  if (!fs.existsSync(configPath)) throw new UserError(`${configPath}: missing (${FOLDER_HOLDS})`);
  if (!fs.existsSync(path.join(dir, files.model)) && !fs.existsSync(path.join(dir, files.modelIndex))) {
    throw new UserError(`${path.join(dir, files.model)}: missing (${FOLDER_HOLDS})`);
  }
  let hfConfig: unknown;
  try {
    hfConfig = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  } catch (error) {
    throw new UserError(`${configPath}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof hfConfig !== 'object' || hfConfig === null || Array.isArray(hfConfig)) throw new UserError(`${configPath}: expected a JSON object`);
  return hfConfig as Record<string, unknown>;
}

export function readDenseCheckpoint(dir: string, options: { forResume?: boolean } = {}): DenseCheckpoint {
  const hfConfig = readDenseConfig(dir);
  const configPath = path.join(dir, files.config);
  if (hfConfig.model_type !== 'qwen2_moe') {
    throw new UserError(
      `${configPath}: model_type must be "qwen2_moe", got ${JSON.stringify(hfConfig.model_type)} (dsmoe's own layout; convert and export also import "olmoe" and "mixtral")`,
    );
  }
  const config = fromHfConfig(hfConfig);
  const problems = configProblems(config);
  if (problems.length) throw new UserError(`${configPath}: ${problems.join('; ')}`);

  const modelPath = path.join(dir, files.model);
  if (!fs.existsSync(modelPath)) throw new UserError(`${modelPath}: missing (${FOLDER_HOLDS})`);
  // Every tensor is read and kept in f32 (a resumed run adds the two AdamW moments).
  checkMemory(`reading ${dir}`, denseCheckpointMemory(config, options.forResume ? 3 : 1));
  const model = openChecked(modelPath, denseTensors(config), 'the model needs');

  // Tensors are read once, checked for non-finite values, and kept: calibration runs many forwards over them.
  const cache = new Map<string, Float32Array>();
  const get = (name: string): Float32Array => {
    let values = cache.get(name);
    if (!values) {
      if (!model.header.tensors.has(name)) throw new UserError(`${modelPath}: no tensor ${name}`);
      values = model.get(name);
      const bad = values.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new UserError(`${modelPath}: tensor ${name} holds a non-finite value (${values[bad]}) at element ${bad}`);
      cache.set(name, values);
    }
    return values;
  };
  for (const tensor of denseTensors(config)) if (!tensor.zero) get(tensor.name);

  let digest: string | undefined;
  const checkpoint: DenseCheckpoint = {
    dir,
    modelPath,
    config,
    hfConfig,
    get,
    normTopkProb: hfConfig.norm_topk_prob === true,
    sha256: () => (digest ??= sha256Files([modelPath])),
  };
  if (options.forResume) Object.assign(checkpoint, readResumeState(dir, config, model));
  return checkpoint;
}

/**
 * Opens a safetensors file and checks it holds every expected tensor with its shape and a float dtype; a zero
 * tensor (the inert shared-expert gate) may be absent, since Hugging Face models without a shared expert omit it.
 */
function openChecked(file: string, expected: DenseTensor[], neededBy: string): SafetensorsFile {
  let reader: SafetensorsFile;
  try {
    reader = readSafetensors(file);
  } catch (error) {
    throw new UserError(`${file}: not a valid safetensors file (${(error as Error).message})`);
  }
  const missing: string[] = [];
  for (const { name, shape, zero } of expected) {
    const info = reader.header.tensors.get(name);
    if (!info) {
      if (!zero) missing.push(name);
      continue;
    }
    if (info.shape.length !== shape.length || info.shape.some((n, i) => n !== shape[i])) {
      throw new UserError(`${file}: tensor ${name} has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}] for the shape in config.json`);
    }
    if (info.dtype !== 'F32' && info.dtype !== 'BF16' && info.dtype !== 'F16') {
      throw new UserError(`${file}: tensor ${name} has dtype ${info.dtype}, expected a float dtype (F32, BF16 or F16)`);
    }
  }
  if (missing.length) {
    const shown = missing.slice(0, 3).join(', ') + (missing.length > 3 ? ` and ${missing.length - 3} more` : '');
    throw new UserError(`${file}: missing ${missing.length} tensor(s) ${neededBy}: ${shown}`);
  }
  return reader;
}

/** trainer_state.json and the AdamW moments of optimizer.safetensors, both from the save model.safetensors is from. */
function readResumeState(dir: string, config: DenseCheckpoint['config'], model: SafetensorsFile): Pick<DenseCheckpoint, 'trainerState' | 'optimizer'> {
  const stateFile = path.join(dir, files.trainerState);
  const state = readJsonFile(stateFile) as TrainerState;
  if (typeof state !== 'object' || state === null || !Number.isInteger(state.step) || state.step < 0 || typeof state.recipe_hash !== 'string') {
    throw new UserError(`${stateFile}: missing or invalid "step" / "recipe_hash"`);
  }
  const optimizerFile = path.join(dir, files.optimizer);
  const moments = denseTensors(config).flatMap((t) => [
    { ...t, name: t.name + momentSuffix.expAvg },
    { ...t, name: t.name + momentSuffix.expAvgSq },
  ]);
  const optimizer = openChecked(optimizerFile, moments, 'resuming needs');
  for (const [file, metadata] of [[path.join(dir, files.model), model.header.metadata], [optimizerFile, optimizer.header.metadata]] as const) {
    if (metadata.checkpoint_id !== state.checkpoint_id) {
      throw new UserError(`${file}: belongs to a different save than ${stateFile} (an interrupted save?); cannot resume from it`);
    }
  }
  const read = (suffix: string) =>
    new Map(
      denseTensors(config)
        .filter((t) => optimizer.header.tensors.has(t.name + suffix))
        .map((t) => [t.name, optimizer.get(t.name + suffix)]),
    );
  return { trainerState: state, optimizer: { expAvg: read(momentSuffix.expAvg), expAvgSq: read(momentSuffix.expAvgSq) } };
}
