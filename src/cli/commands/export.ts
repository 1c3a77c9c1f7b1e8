import type { CommandModule } from 'yargs';
import { exportHf, type ExportDtype } from '../../interop/export_hf';

interface ExportArgs {
  source: string;
  out: string;
  'top-k'?: number;
  dtype: ExportDtype;
  quiet: boolean;
}

/** `dsmoe export <dense-dir|sparse-dir> --out HF_DIR`: a Hugging Face Qwen2MoeForCausalLM folder (docs/interop.md). */
export const exportCommand: CommandModule<object, ExportArgs> = {
  command: 'export <source>',
  describe: 'Export a dense checkpoint or a sparse plan as a Hugging Face Qwen2-MoE folder (transformers, vLLM)',
  builder: (yargs) =>
    yargs
      .positional('source', { type: 'string', demandOption: true, describe: 'dense checkpoint folder or sparse plan folder' })
      .option('out', { type: 'string', demandOption: true, describe: 'Hugging Face folder to write' })
      .option('top-k', {
        type: 'number',
        describe: "experts per token written as num_experts_per_tok (default: the plan's top-k, or the dense config's); required for threshold plans",
      })
      .option('dtype', { choices: ['f32', 'bf16'] as const, default: 'f32' as const, describe: 'storage of every tensor in model.safetensors' })
      .option('quiet', { type: 'boolean', default: false, describe: 'print nothing but errors' }),
  handler: (args) => {
    const log = (line: string) => {
      if (!args.quiet) process.stderr.write(`export: ${line}\n`);
    };
    const result = exportHf(args.source, { outDir: args.out, topK: args['top-k'], dtype: args.dtype, log });
    log(`wrote ${args.out} (${result.files.join(', ')}): num_experts_per_tok ${result.topK}, norm_topk_prob ${result.normTopkProb}`);
  },
};
