import * as fs from 'fs';
import * as path from 'path';
import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { heldOutSplit } from '../../data/held_out_split';
import { BackendChoice, backendChoices, describeBackend, selectBackend } from '../../train/backend';
import { evaluateWindows } from '../../train/evaluate';
import { loadDenseModel } from '../../train/load_dense_model';
import { formatRoutingStats } from '../../train/routing_stats';
import { expertCacheFromArgs, withExpertCacheFlags, type ExpertCacheArgs } from '../expert_cache_flags';
import { formatExpertCacheStats, type ExpertCacheOptions, type ExpertCacheStats } from '../../runtime/expert_cache';
import { deviceOption, type Device } from '../device_option';
import { residencyFromArgs, residencyOption } from '../residency_option';
import type { Residency } from '../../runtime/residency';

interface EvalArgs extends ExpertCacheArgs {
  'model-dir': string;
  text?: string;
  recipe?: string;
  context?: number;
  json: boolean;
  backend: BackendChoice;
  threads?: number;
  device: Device;
  residency?: string;
}

/** What both the dense (tfjs) and the sparse (native runtime) paths report. */
interface EvalReport {
  model_dir: string;
  mode: string;
  source: string;
  loss: number;
  perplexity: number;
  bits_per_byte: number;
  tokens: number;
  context?: number;
  [key: string]: unknown;
}

const evalBatch = 16; // windows per forward pass

async function evaluateDense(dir: string, args: EvalArgs): Promise<EvalReport> {
  const split = heldOutSplit(dir, { recipe: args.recipe, text: args.text }); // before the backend and the model: fail fast
  const backend = await selectBackend(args.backend);
  process.stderr.write(describeBackend(backend) + '\n');
  const loaded = loadDenseModel(dir);
  try {
    const context = args.context ?? loaded.seqLen;
    const result = evaluateWindows(loaded.model, split.windows(context), split.bytesPerToken, evalBatch);
    return { model_dir: dir, mode: 'dense', source: split.source, context, backend: backend.name, ...result };
  } finally {
    loaded.dispose();
  }
}

export const evalCommand: CommandModule<object, EvalArgs> = {
  command: 'eval <model-dir>',
  describe: 'Loss, perplexity, bits/byte and routing statistics of a dense checkpoint or a sparse plan folder',
  builder: (yargs) =>
    withExpertCacheFlags(yargs)
      .positional('model-dir', { type: 'string', demandOption: true, describe: 'dense checkpoint folder, or sparse folder (has plan.json)' })
      .option('text', { type: 'string', describe: 'score this UTF-8 file (one token sequence, windows of --context tokens) instead of the held-out split' })
      .option('recipe', {
        type: 'string',
        describe: 'the recipe the model was trained with, for its held-out split (default: the one named in config.json, as recipes/<name>.yaml here or in the package; its hash must match)',
      })
      .option('context', { type: 'number', describe: 'tokens per window (default: the trained sequence length)' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object on stdout' })
      .option('threads', { type: 'number', describe: 'sparse runtime threads (sparse folders only)' })
      .option('device', deviceOption('auto', ' (sparse folders only)'))
      .option('residency', residencyOption())
      .option('backend', { type: 'string', choices: backendChoices, default: 'auto', describe: 'tfjs backend (dense folders)' }) as never,
  handler: async (args) => {
    const dir = path.resolve(args['model-dir']);
    if (args.context !== undefined && (!Number.isInteger(args.context) || args.context < 2)) {
      throw new UserError(`--context must be an integer ≥ 2, got ${args.context}`);
    }
    let report: EvalReport;
    if (fs.existsSync(path.join(dir, 'plan.json'))) {
      // Loaded only here: the sparse runtime (and its native addon) is not needed for dense folders.
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const runtime = require('../../runtime/eval') as {
        evaluateSparse(
          dir: string,
          options: { text?: string; recipe?: string; context?: number; threads?: number; device?: Device; expertCache?: ExpertCacheOptions; residency?: Residency },
        ): Promise<{ loss: number; perplexity: number; bits_per_byte: number; tokens: number; source: string; mode?: string; device: string }>;
      };
      const result = await runtime.evaluateSparse(dir, {
        text: args.text,
        recipe: args.recipe,
        context: args.context,
        threads: args.threads,
        device: args.device,
        expertCache: expertCacheFromArgs(args),
        residency: residencyFromArgs(args),
      });
      process.stderr.write(`device: ${result.device}\n`);
      report = { model_dir: dir, ...result, mode: `sparse${result.mode ? ':' + result.mode : ''}` };
    } else {
      report = await evaluateDense(dir, args);
    }
    if (args.json) {
      process.stdout.write(JSON.stringify(report) + '\n');
      return;
    }
    const lines = [
      `${report.model_dir} (${report.mode}) on ${report.source}`,
      `loss ${report.loss.toFixed(4)} nats/token, perplexity ${report.perplexity.toFixed(3)}, ${report.bits_per_byte.toFixed(4)} bits/byte, ${report.tokens} tokens`,
    ];
    if (Array.isArray(report.layers)) lines.push(...formatRoutingStats(report.layers as never));
    if (Array.isArray(report.attention_layers)) lines.push(...formatRoutingStats(report.attention_layers as never, 'attention layer'));
    if (report.expert_cache) lines.push(formatExpertCacheStats(report.expert_cache as ExpertCacheStats));
    if (Array.isArray(report.routing)) lines.push(`experts per token by layer: ${(report.routing as number[]).map((k) => k.toFixed(2)).join(' ')}`);
    process.stdout.write(lines.join('\n') + '\n');
  },
};
