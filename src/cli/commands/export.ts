import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { exportHf } from '../../interop/export_hf';
import { exportGguf, GGUF_DTYPES, type GgufDtype } from '../../interop/export_gguf';

interface ExportArgs {
  source: string;
  out: string;
  format: 'hf' | 'gguf';
  'top-k'?: number;
  dtype?: GgufDtype;
  quiet: boolean;
}

/**
 * `dsmoe export <dense-dir|sparse-dir> --out HF_DIR`: a Hugging Face Qwen2MoeForCausalLM folder (MegrezMoeForCausalLM
 * for a model with shared expert pools);
 * `--format gguf --out FILE.gguf`: one GGUF file for llama.cpp's qwen2moe (docs/interop.md).
 */
export const exportCommand: CommandModule<object, ExportArgs> = {
  command: 'export <source>',
  describe: 'Export a dense checkpoint or a sparse plan as a Hugging Face Qwen2-MoE folder (transformers, vLLM) or a GGUF file (llama.cpp, ollama)',
  builder: (yargs) =>
    yargs
      .positional('source', { type: 'string', demandOption: true, describe: 'dense checkpoint folder or sparse plan folder' })
      .option('out', { type: 'string', demandOption: true, describe: 'Hugging Face folder to write, or the .gguf file with --format gguf' })
      .option('format', { choices: ['hf', 'gguf'] as const, default: 'hf' as const, describe: 'hf: a transformers folder; gguf: one file for llama.cpp' })
      .option('top-k', {
        type: 'number',
        describe: "experts per token written as num_experts_per_tok / expert_used_count (default: the plan's top-k, or the dense config's); required for threshold plans",
      })
      .option('dtype', {
        choices: GGUF_DTYPES,
        describe: 'storage of the weight matrices (default f32); hf takes f32 or bf16, gguf any of these (norms, biases and routers stay f32)',
      })
      .option('quiet', { type: 'boolean', default: false, describe: 'print nothing but errors' }),
  handler: (args) => {
    const log = (line: string) => {
      if (!args.quiet) process.stderr.write(`export: ${line}\n`);
    };
    const dtype = args.dtype ?? 'f32';
    if (args.format === 'gguf') {
      exportGguf(args.source, { outFile: args.out, topK: args['top-k'], dtype, log });
      return;
    }
    if (dtype !== 'f32' && dtype !== 'bf16') throw new UserError(`--dtype ${dtype}: a Hugging Face folder is written as f32 or bf16 (the block formats are for --format gguf)`);
    const result = exportHf(args.source, { outDir: args.out, topK: args['top-k'], dtype, log });
    log(`wrote ${args.out} as ${result.architecture} (${result.files.join(', ')}): num_experts_per_tok ${result.topK}, norm_topk_prob ${result.normTopkProb}`);
  },
};
