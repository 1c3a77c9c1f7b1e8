/**
 * Opens any dense folder that `dsmoe convert` and `dsmoe export` accept: dsmoe's own checkpoint (src/checkpoint) or a
 * Hugging Face MoE folder through its architecture adapter; both give the same `DenseCheckpoint`. The choice lives
 * here, above both readers, so that src/checkpoint never imports the adapters and nothing imports in a circle.
 */
import * as fs from 'fs';
import * as path from 'path';
import { files, type DenseCheckpoint } from '../checkpoint/dense';
import { readDenseCheckpoint, readDenseConfig } from '../checkpoint/read_dense';
import { readSafetensorsHeader } from '../checkpoint/safetensors';
import { denseNames } from '../plan/tensor_table';
import { architectureFor } from './architectures';
import { readHfCheckpoint } from './read_hf_checkpoint';

export function readAnyDenseCheckpoint(dir: string): DenseCheckpoint {
  const hfConfig = readDenseConfig(dir);
  const architecture = architectureFor(hfConfig.model_type);
  if (architecture && isForeignLayout(dir, hfConfig)) return readHfCheckpoint(dir, hfConfig, architecture);
  return readDenseCheckpoint(dir);
}

/**
 * dsmoe's own layout is a config.json with a "dsmoe" block and one model.safetensors with per-expert Qwen2-MoE
 * names; anything else (another architecture, a Qwen2-MoE from the Hub, sharded weights, transformers 5's fused
 * experts) is read through the adapters, which also read transformers 5 config spellings.
 */
function isForeignLayout(dir: string, hfConfig: Record<string, unknown>): boolean {
  if (hfConfig.model_type !== 'qwen2_moe' || hfConfig.dsmoe === undefined) return true;
  const single = path.join(dir, files.model);
  if (!fs.existsSync(single)) return true;
  try {
    // the first MoE layer's first expert (layers before first_k_dense_replace are dense MLPs without experts)
    const firstMoe = typeof hfConfig.first_k_dense_replace === 'number' ? hfConfig.first_k_dense_replace : 0;
    return !readSafetensorsHeader(single).tensors.has(denseNames.expertGate(firstMoe, 0));
  } catch {
    return false; // let the strict reader report what is wrong with the file
  }
}
