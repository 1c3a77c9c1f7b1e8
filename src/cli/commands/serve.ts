import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { loadServeModel } from '../../serve/load_serve_model';
import { runServer } from '../../serve/run_server';
import { expertCacheFromArgs, withExpertCacheFlags, type ExpertCacheArgs } from '../expert_cache_flags';
import { deviceOption, type Device } from '../device_option';
import { residencyFromArgs, residencyOption } from '../residency_option';

interface ServeArgs extends ExpertCacheArgs {
  'model-dir': string;
  port: number;
  host: string;
  threads?: number;
  'max-batch': number;
  'max-queue': number;
  'max-context'?: number;
  'prefill-chunk': number;
  'model-name'?: string;
  device: Device;
  residency?: string;
}

/** `dsmoe serve`: an OpenAI-compatible completions API over a sparse plan, with continuous batching. */
export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve <model-dir>',
  describe: 'Serve a sparse plan over an OpenAI-compatible HTTP API (POST /v1/completions, SSE streaming, /metrics)',
  builder: (yargs) =>
    withExpertCacheFlags(yargs)
      .positional('model-dir', { type: 'string', demandOption: true, describe: 'sparse plan folder written by dsmoe convert' })
      .option('port', { type: 'number', default: 8000, describe: 'TCP port (0 = any free port, printed at start)' })
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on (0.0.0.0 exposes it to the network)' })
      .option('threads', { type: 'number', describe: 'runtime threads (default: all cores)' })
      .option('device', deviceOption('auto'))
      .option('residency', residencyOption())
      .option('max-batch', { type: 'number', default: 16, describe: 'sequences decoded together (one KV-cache slot each)' })
      .option('max-queue', { type: 'number', default: 256, describe: 'requests waiting for a slot before 429' })
      .option('max-context', { type: 'number', describe: "tokens per sequence (default: the model's max_position_embeddings)" })
      .option('prefill-chunk', { type: 'number', default: 128, describe: 'prompt tokens a sequence feeds per scheduler step' })
      .option('model-name', { type: 'string', describe: "id reported by /v1/models (default: the folder's last two path components, e.g. tiny/sparse)" })
      .example('$0 serve checkpoints/tiny/sparse --port 8000', '')
      .example(`curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' -d '{"prompt":"In the beginning","max_tokens":32,"temperature":0}'`, ''),
  handler: async (args) => {
    const positive = (name: string, value: number | undefined, min: number) => {
      if (value !== undefined && (!Number.isInteger(value) || value < min)) {
        throw new UserError(`--${name} must be an integer ≥ ${min}, got ${value}`);
      }
    };
    positive('port', args.port, 0);
    if (args.port > 65535) throw new UserError(`--port must be at most 65535, got ${args.port}`);
    positive('threads', args.threads, 1);
    positive('max-batch', args['max-batch'], 1);
    positive('max-queue', args['max-queue'], 0);
    positive('max-context', args['max-context'], 2);
    positive('prefill-chunk', args['prefill-chunk'], 1);
    const model = await loadServeModel(args['model-dir'], {
      threads: args.threads,
      slots: args['max-batch'],
      maxContext: args['max-context'],
      id: args['model-name'],
      expertCache: expertCacheFromArgs(args),
      residency: residencyFromArgs(args),
      device: args.device,
    });
    process.stderr.write(`device: ${model.device}\n`);
    await runServer(model, {
      port: args.port,
      host: args.host,
      maxBatch: args['max-batch'],
      maxQueue: args['max-queue'],
      prefillChunk: args['prefill-chunk'],
    });
    // Drained and disposed: exit now rather than wait on whatever a runtime thread pool may keep open.
    process.exit(0);
  },
};
