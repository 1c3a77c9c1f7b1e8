/**
 * Load test of `dsmoe serve` (`npm run bench:serve`, i.e. `node dist/bench/serve.js`): starts the server in this
 * process on 127.0.0.1 and drives it with Node's own http client at 1, 4, 16 and 64 concurrent clients (each a
 * closed loop: send, wait for the whole answer, send again), with a bounded request count and time per level.
 *
 * Prints a Markdown table: requests/s, generated tokens/s, p50/p95 latency, time to first token, and the limit the
 * served throughput is measured against: the same runtime prefilling and decoding the same number of sequences
 * directly (no HTTP, no scheduler; best of three runs), so "served / direct" is the share of the runtime's speed
 * the server delivers.
 * The clients share this process (and its cores) with the server: on a small machine their cost shows in the figures.
 *
 *   node dist/bench/serve.js [--model PLAN_DIR] [--clients 1,4,16,64] [--requests N] [--seconds S]
 *                            [--max-tokens N] [--prompt-tokens N] [--threads N] [--fake] [--json]
 *
 * Without --model it writes a random-init plan of the tiny recipe's shape (byte tokenizer) to a temporary folder.
 */
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import type { ServeModel } from '../serve/batch_evaluator';
import { CompletionServer } from '../serve/completion_server';
import { createFakeServeModel } from '../serve/fake_model';
import { loadServeModel, writeBenchPlan } from '../serve/load_serve_model';
import { percentile } from '../serve/percentile';

interface LevelResult {
  clients: number;
  requests: number;
  failed: number;
  seconds: number;
  requestsPerS: number;
  tokensPerS: number;
  p50Ms: number;
  p95Ms: number;
  ttftP50Ms: number;
  meanDecodeBatch: number;
  directTokensPerS: number;
}

async function main(): Promise<void> {
  const args = await yargs(process.argv.slice(2))
    .scriptName('bench-serve')
    .option('model', { type: 'string', describe: 'plan folder to serve (default: a random plan of the tiny shape)' })
    .option('clients', { type: 'string', default: '1,4,16,64', describe: 'concurrency levels' })
    .option('requests', { type: 'number', describe: 'requests per level (default: max(8, 4 × clients))' })
    .option('seconds', { type: 'number', default: 30, describe: 'time limit per level' })
    .option('max-tokens', { type: 'number', default: 32 })
    .option('prompt-tokens', { type: 'number', default: 32, describe: 'prompt length (bytes of a byte tokenizer)' })
    .option('threads', { type: 'number', describe: 'runtime threads (default: all cores)' })
    .option('fake', { type: 'boolean', default: false, describe: 'serve the deterministic fake runtime (HTTP + scheduler cost only)' })
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON object instead of the table' })
    .strict()
    .help()
    .parseAsync();
  const levels = args.clients.split(',').map((s) => Number(s.trim()));
  if (levels.some((c) => !Number.isInteger(c) || c < 1 || c > 1024)) throw new Error(`--clients: integers in 1..1024, got ${args.clients}`);
  const slots = Math.max(...levels);

  let cleanup = () => {};
  let model: ServeModel;
  let source: string;
  if (args.fake) {
    model = createFakeServeModel({ slots, maxContext: 4096 });
    source = 'fake runtime (hash logits, no model)';
  } else {
    let dir = args.model;
    if (!dir) {
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-bench-serve-'));
      cleanup = () => fs.rmSync(tmp, { recursive: true, force: true });
      dir = path.join(tmp, 'plan');
      source = writeBenchPlan(dir);
    } else source = dir;
    model = await loadServeModel(dir, { threads: args.threads, slots });
  }

  const server = new CompletionServer(model, { maxBatch: slots, maxQueue: 4 * slots });
  const { port } = await server.listen(0, '127.0.0.1');
  const promptTokens = args['prompt-tokens'];
  const maxTokens = args['max-tokens'];
  if (promptTokens + maxTokens > model.maxContext) throw new Error(`prompt + max tokens exceed the context ${model.maxContext}`);
  const results: LevelResult[] = [];
  try {
    await timedCompletion(port, promptOf(0, promptTokens), maxTokens); // warm-up
    for (const clients of levels) {
      const budget = args.requests ?? Math.max(8, 4 * clients);
      const result = await runLevel(server, port, clients, budget, args.seconds, promptTokens, maxTokens);
      // The limit is the runtime at its best: the fastest of three direct runs (a busy machine only slows runs down).
      for (let repeat = 0; repeat < 3; repeat++) {
        result.directTokensPerS = Math.max(result.directTokensPerS, await directDecode(model, clients, promptTokens, maxTokens));
      }
      results.push(result);
      if (!args.json) process.stderr.write(`  ${clients} clients: ${result.requests} requests, ${result.tokensPerS.toFixed(1)} tok/s\n`);
    }
  } finally {
    await server.drain();
    model.dispose();
    cleanup();
  }
  if (args.json) {
    process.stdout.write(JSON.stringify({ source, cpus: os.cpus().length, promptTokens, maxTokens, results }) + '\n');
    return;
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  process.stdout.write(`\n### dsmoe serve load test\n\nModel: ${source}. Machine: ${cpu}, ${os.cpus().length} cores. `);
  process.stdout.write(`Prompt ${promptTokens} tokens, ${maxTokens} generated per request, temperature 0; closed-loop clients on loopback.\n\n`);
  process.stdout.write('| clients | requests | req/s | gen tok/s | p50 latency ms | p95 latency ms | TTFT p50 ms | mean decode batch | direct tok/s | served / direct |\n');
  process.stdout.write('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const r of results) {
    const row = [
      r.clients,
      r.requests + (r.failed ? ` (${r.failed} failed)` : ''),
      r.requestsPerS.toFixed(2),
      r.tokensPerS.toFixed(1),
      r.p50Ms.toFixed(0),
      r.p95Ms.toFixed(0),
      r.ttftP50Ms.toFixed(0),
      r.meanDecodeBatch.toFixed(1),
      r.directTokensPerS.toFixed(1),
      `${((100 * r.tokensPerS) / r.directTokensPerS).toFixed(0)}%`,
    ];
    process.stdout.write(`| ${row.join(' | ')} |\n`);
  }
}

/** A distinct prompt per request, so no two requests share a prefix by accident. */
function promptOf(i: number, tokens: number): string {
  const text = `Request ${i}: and the earth was without form, and void; and darkness was upon the face of the deep. `;
  return text.repeat(Math.ceil(tokens / text.length) + 1).slice(0, tokens);
}

async function runLevel(
  server: CompletionServer,
  port: number,
  clients: number,
  budget: number,
  seconds: number,
  promptTokens: number,
  maxTokens: number,
): Promise<LevelResult> {
  const latencies: number[] = [];
  const firstTokens: number[] = [];
  let tokens = 0;
  let failed = 0;
  let issued = 0;
  const batchSamples: number[] = [];
  const sampler = setInterval(() => batchSamples.push(server.scheduler.lastDecodeBatch), 5);
  // Keep-alive connections, one per client, as SDK clients hold them.
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const client = async () => {
    while (issued < budget && performance.now() < deadline) {
      const i = issued++;
      try {
        const answer = await timedCompletion(port, promptOf(i, promptTokens), maxTokens, agent);
        latencies.push(answer.ms);
        firstTokens.push(answer.firstMs);
        tokens += answer.tokens;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  clearInterval(sampler);
  const busy = batchSamples.filter((b) => b > 0);
  return {
    clients,
    requests: latencies.length,
    failed,
    seconds: elapsed,
    requestsPerS: latencies.length / elapsed,
    tokensPerS: tokens / elapsed,
    p50Ms: percentile(latencies, 0.5),
    p95Ms: percentile(latencies, 0.95),
    ttftP50Ms: percentile(firstTokens, 0.5),
    meanDecodeBatch: busy.length ? busy.reduce((a, b) => a + b, 0) / busy.length : 0,
    directTokensPerS: 0,
  };
}

/** One streamed completion: total time, time to the first event, and generated tokens (from the usage chunk). */
function timedCompletion(port: number, prompt: string, maxTokens: number, agent: http.Agent | false = false): Promise<{ ms: number; firstMs: number; tokens: number }> {
  const body = JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/v1/completions', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`status ${res.statusCode}`));
          return;
        }
        let firstMs = -1;
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (firstMs < 0) firstMs = performance.now() - started;
          text += chunk;
        });
        res.on('end', () => {
          const usage = /"completion_tokens":(\d+)/.exec(text);
          if (!usage) return reject(new Error('no usage in the stream'));
          resolve({ ms: performance.now() - started, firstMs, tokens: Number(usage[1]) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * The limit: the same work straight on the evaluator, in its best shape (the server is idle between levels, so its
 * slots are free): `clients` prompts prefilled in one call, then `maxTokens` decode steps of all of them together.
 * Generated tokens per second, prefill included, as in the served figure.
 */
async function directDecode(model: ServeModel, clients: number, promptTokens: number, maxTokens: number): Promise<number> {
  const { evaluator } = model;
  const prompts = Array.from({ length: clients }, (_, s) => model.tokenizer.encode(promptOf(s, promptTokens)));
  const lengths = prompts.map((p) => p.length);
  const prefillSlots = prompts.flatMap((p, s) => p.map(() => s));
  const prefillPositions = prompts.flatMap((p) => p.map((_, i) => i));
  const lastRows = Int32Array.from(lengths.map((_, s) => lengths.slice(0, s + 1).reduce((a, b) => a + b, 0) - 1));
  const slots = Int32Array.from({ length: clients }, (_, s) => s);
  const rows = Int32Array.from({ length: clients }, (_, i) => i);
  const tokens = new Int32Array(clients).fill(32); // a space: any valid token will do for timing
  const started = performance.now();
  await evaluator.evaluate(Int32Array.from(prompts.flat()), Int32Array.from(prefillSlots), Int32Array.from(prefillPositions), lastRows);
  for (let step = 1; step < maxTokens; step++) {
    await evaluator.evaluate(tokens, slots, Int32Array.from(lengths, (n) => n + step - 1), rows);
  }
  const seconds = (performance.now() - started) / 1000;
  for (let s = 0; s < clients; s++) evaluator.clearSlot(s);
  return (clients * maxTokens) / seconds;
}

main().catch((error) => {
  process.stderr.write(`bench-serve: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
