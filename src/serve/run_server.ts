import type { ServeModel } from './batch_evaluator';
import { CompletionServer, type ServeOptions } from './completion_server';

export interface RunServerOptions extends ServeOptions {
  port: number;
  host: string;
  /** Where the "listening" line and shutdown notes go; default stdout / stderr. */
  log?: (line: string) => void;
}

/**
 * Serves until SIGTERM or SIGINT, then drains: stops accepting, finishes every accepted request, frees the model.
 * A second signal while draining exits at once. Resolves after the drain (the caller exits the process).
 */
export async function runServer(model: ServeModel, options: RunServerOptions): Promise<void> {
  const log = options.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const server = new CompletionServer(model, options);
  const address = await server.listen(options.port, options.host);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  log(`dsmoe serve: listening on http://${host}:${address.port} (model ${model.id}, max batch ${options.maxBatch ?? model.slots}, context ${model.maxContext})`);
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      const force = () => {
        process.stderr.write('dsmoe serve: second signal, exiting without draining\n');
        process.exit(1);
      };
      process.once('SIGTERM', force);
      process.once('SIGINT', force);
      process.stderr.write(`dsmoe serve: ${signal}: finishing ${server.scheduler.activeSequences + server.scheduler.queueDepth} request(s), accepting no more\n`);
      server.drain().then(resolve, resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  model.dispose();
  process.stderr.write('dsmoe serve: drained, exiting\n');
}
