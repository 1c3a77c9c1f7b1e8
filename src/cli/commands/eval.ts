import * as fs from 'fs';
import * as path from 'path';
import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { prepareData } from '../../data';
import { BackendChoice, backendChoices, describeBackend, selectBackend } from '../../train/backend';
import { EvalResult, evaluateWindows, sequenceWindows } from '../../train/evaluate';
import { loadDenseModel, trainingRecipe } from '../../train/load_dense_model';
import { formatRoutingStats } from '../../train/routing_stats';

interface EvalArgs {
  'model-dir': string;
  text?: string;
  context?: number;
  json: boolean;
  backend: BackendChoice;
  threads?: number;
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
  const backend = await selectBackend(args.backend);
  process.stderr.write(describeBackend(backend) + '\n');
  const loaded = loadDenseModel(dir);
  try {
    let result: EvalResult;
    let source: string;
    const context = args.context ?? loaded.seqLen;
    if (args.text) {
      let text: string;
      try {
        text = fs.readFileSync(args.text, 'utf8');
      } catch (error) {
        throw new UserError(`${args.text}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
      }
      const tokens = loaded.tokenizer.encode(text);
      if (tokens.length < 2) throw new UserError(`${args.text}: needs at least 2 tokens to score, got ${tokens.length}`);
      const bytesPerToken = Buffer.byteLength(text, 'utf8') / tokens.length;
      result = evaluateWindows(loaded.model, sequenceWindows(tokens, context), bytesPerToken, evalBatch);
      source = args.text;
    } else {
      const recipe = trainingRecipe(loaded.checkpoint);
      const { dataset } = prepareData(recipe, { tokenizer: loaded.tokenizer });
      const windows = dataset.validationWindows(recipe.train.eval_tokens, context);
      result = evaluateWindows(loaded.model, windows, dataset.validationBytesPerToken, evalBatch);
      source = `held-out split of ${recipe.name}`;
    }
    return { model_dir: dir, mode: 'dense', source, context, backend: backend.name, ...result };
  } finally {
    loaded.dispose();
  }
}

export const evalCommand: CommandModule<object, EvalArgs> = {
  command: 'eval <model-dir>',
  describe: 'Loss, perplexity, bits/byte and routing statistics of a dense checkpoint or a sparse plan folder',
  builder: (yargs) =>
    yargs
      .positional('model-dir', { type: 'string', demandOption: true, describe: 'dense checkpoint folder, or sparse folder (has plan.json)' })
      .option('text', { type: 'string', describe: 'score this UTF-8 file (one token sequence) instead of the held-out split' })
      .option('context', { type: 'number', describe: 'tokens per window (default: the trained sequence length)' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object on stdout' })
      .option('threads', { type: 'number', describe: 'sparse runtime threads (sparse folders only)' })
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
          options: { text?: string; context?: number; threads?: number },
        ): Promise<{ loss: number; perplexity: number; bits_per_byte: number; tokens: number; source: string; mode?: string }>;
      };
      const result = await runtime.evaluateSparse(dir, { text: args.text, context: args.context, threads: args.threads });
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
    if (Array.isArray(report.routing)) lines.push(`experts per token by layer: ${(report.routing as number[]).map((k) => k.toFixed(2)).join(' ')}`);
    process.stdout.write(lines.join('\n') + '\n');
  },
};
