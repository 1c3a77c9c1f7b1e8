/**
 * `dsmoe export`: writes a folder transformers loads as `Qwen2MoeForCausalLM` and vLLM serves —
 * config.json, model.safetensors (F32 or BF16, per-expert names, the layout both read), tokenizer.json,
 * tokenizer_config.json and generation_config.json. A model with Megrez2's shared expert pools is written in
 * Megrez2's layout instead (`MegrezMoeForCausalLM`, src/interop/megrez_layout.ts), the only one that holds a pool
 * once. See docs/interop.md for what each choice is for.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { writeSafetensors, type TensorToWrite } from '../checkpoint/safetensors';
import { writeJsonAtomic } from '../checkpoint/atomic';
import { denseTensors } from '../plan/tensor_table';
import { toHfConfig } from '../model/config';
import { loadAnyTokenizer } from './hf_tokenizer';
import { readExportSource } from './export_source';
import { isMegrezShaped, megrezExportProblems, megrezTensors, toMegrezConfig } from './megrez_layout';

export type ExportDtype = 'f32' | 'bf16';

export interface ExportOptions {
  outDir: string;
  topK?: number;
  dtype: ExportDtype;
  log?: (line: string) => void;
}

export interface ExportResult {
  /** The architecture written: Qwen2-MoE, or Megrez2 for a model with shared expert pools. */
  architecture: 'Qwen2MoeForCausalLM' | 'MegrezMoeForCausalLM';
  files: string[];
  topK: number;
  normTopkProb: boolean;
  tensors: number;
}

export function exportHf(sourceDir: string, options: ExportOptions): ExportResult {
  const log = options.log ?? (() => undefined);
  if (path.resolve(options.outDir) === path.resolve(sourceDir)) throw new UserError('--out must differ from the source folder');
  const source = readExportSource(sourceDir, options.topK);
  for (const note of source.notes) log(note);
  const weights = source.weights;
  const c = weights.config;
  // Qwen2-MoE has one set of experts per layer and routes every layer on its own input: a model with Megrez2's
  // pools or pre-gate goes to Megrez2's layout, which must then express everything else exactly (docs/interop.md).
  const megrez = isMegrezShaped(c);
  if (megrez) {
    const problems = megrezExportProblems(c);
    if (problems.length) throw new UserError(`${sourceDir}: Megrez2's layout (the one target with shared expert pools) cannot express ${problems.join('; ')}`);
  }
  const tokenizer = loadAnyTokenizer(sourceDir);
  fs.mkdirSync(options.outDir, { recursive: true });

  // --- model.safetensors ----------------------------------------------------------------------------------------
  const dtype = options.dtype === 'bf16' ? 'BF16' : 'F32';
  // Megrez2: src/interop/megrez_layout.ts. Qwen2-MoE: without a shared expert the table still lists the zero
  // shared-expert gate [1, d]: vLLM always creates and loads one, and a zero gate adds nothing. The shared expert
  // itself is NOT written: vLLM builds none when its size is 0 and would fail on an unexpected
  // shared_expert.down_proj (transformers builds empty [0, d] ones, lists them missing).
  const tensors: TensorToWrite[] = megrez
    ? megrezTensors(c, (name) => weights.get(name), dtype)
    : denseTensors(c).map(({ name, shape, zero }) => ({
        name,
        dtype,
        shape,
        data: zero ? new Float32Array(shape[0] * shape[1]) : weights.get(name),
      }));
  const modelFile = path.join(options.outDir, 'model.safetensors');
  writeSafetensors(modelFile, tensors, { format: 'pt' }); // transformers refuses safetensors without format=pt
  log(`wrote ${tensors.length} tensors (${dtype}) to ${modelFile}`);

  // --- config.json ------------------------------------------------------------------------------------------------
  const eos = tokenizer.eosId;
  const extra = {
    torch_dtype: options.dtype === 'bf16' ? 'bfloat16' : 'float32',
    bos_token_id: eos,
    eos_token_id: eos,
    dsmoe: { exported_from: path.resolve(sourceDir), source: source.kind, source_model_type: source.sourceModelType },
  };
  const hfConfig = megrez
    ? toMegrezConfig(c, source.topK, source.renormalize, extra)
    : toHfConfig(
        { ...c, num_experts_per_tok: source.topK },
        {
          norm_topk_prob: source.renormalize,
          // transformers 5 reads RoPE from rope_parameters, transformers 4 and older vLLM from rope_theta: write both
          rope_parameters: { rope_type: 'default', rope_theta: c.rope_theta },
          ...extra,
        },
      );
  writeJsonAtomic(path.join(options.outDir, 'config.json'), hfConfig);
  writeJsonAtomic(path.join(options.outDir, 'generation_config.json'), { bos_token_id: eos, eos_token_id: eos, do_sample: false });

  // --- tokenizer ------------------------------------------------------------------------------------------------
  fs.copyFileSync(path.join(sourceDir, 'tokenizer.json'), path.join(options.outDir, 'tokenizer.json'));
  writeJsonAtomic(path.join(options.outDir, 'tokenizer_config.json'), tokenizerConfig(sourceDir, tokenizer.decode([eos]), c.max_position_embeddings));
  return {
    architecture: megrez ? 'MegrezMoeForCausalLM' : 'Qwen2MoeForCausalLM',
    files: ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'],
    topK: source.topK,
    normTopkProb: source.renormalize,
    tensors: tensors.length,
  };
}

/**
 * The source's tokenizer_config.json with what AutoTokenizer needs made explicit: `tokenizer_class`
 * (PreTrainedTokenizerFast reads tokenizer.json alone), the eos token and model_max_length.
 */
function tokenizerConfig(sourceDir: string, eosText: string, maxLength: number): Record<string, unknown> {
  const file = path.join(sourceDir, 'tokenizer_config.json');
  let config: Record<string, unknown> = {};
  if (fs.existsSync(file)) {
    try {
      config = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (error) {
      throw new UserError(`${file}: not valid JSON (${(error as Error).message})`);
    }
  }
  return {
    ...config,
    tokenizer_class: typeof config.tokenizer_class === 'string' ? config.tokenizer_class : 'PreTrainedTokenizerFast',
    eos_token: config.eos_token ?? eosText,
    model_max_length: typeof config.model_max_length === 'number' ? config.model_max_length : maxLength,
  };
}
