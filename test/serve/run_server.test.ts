import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from '../../src/serve/completion_client';
import { writeBenchPlan } from '../../src/serve/load_serve_model';

// SIGTERM in a real child process: the server stops accepting, finishes what it accepted, then exits 0.
// The child runs the TypeScript sources through the notebook runner's require hook (no build needed).

const ROOT = path.resolve(__dirname, '..', '..');
const FAKE_CHILD = `
require('./scripts/run-notebooks.js').registerTypeScript();
const { runServer } = require('./src/serve/run_server.ts');
const { createFakeServeModel } = require('./src/serve/fake_model.ts');
runServer(createFakeServeModel({ delayMs: 10 }), { port: 0, host: '127.0.0.1' }).then(() => process.exit(0));
`;

/** The `dsmoe serve` command itself on a random plan (its handler exits the process after the drain). */
const commandChild = (planDir: string) => `
require('./scripts/run-notebooks.js').registerTypeScript();
const { serveCommand } = require('./src/cli/commands/serve.ts');
serveCommand.handler({ 'model-dir': ${JSON.stringify(planDir)}, port: 0, host: '127.0.0.1', threads: 1, 'max-batch': 8, 'max-queue': 16, 'prefill-chunk': 128 });
`;

test('SIGTERM drains in-flight requests, refuses new ones, and exits 0 (fake runtime)', async () => {
  await sigtermDrains(FAKE_CHILD, 200);
}, 30000);

test('SIGTERM drains dsmoe serve on the native runtime', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-serve-sigterm-'));
  try {
    writeBenchPlan(path.join(dir, 'plan'));
    await sigtermDrains(commandChild(path.join(dir, 'plan')), 480);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60000);

async function sigtermDrains(script: string, maxTokens: number): Promise<void> {
  const child = spawn(process.execPath, ['-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    child.on('exit', () => reject(new Error(`the server exited before listening: ${stderr}`)));
  });
  const body = { prompt: 'drain me', max_tokens: maxTokens, temperature: 0 };
  const inFlight = Promise.all([
    request(port, 'POST', '/v1/completions', body),
    request(port, 'POST', '/v1/completions', { ...body, stream: true }),
    request(port, 'POST', '/v1/completions', body),
  ]);
  // Signal only once all three are accepted (on a loaded machine connections can sit in the listen backlog).
  for (const started = Date.now(); ; ) {
    if (Date.now() - started > 10000) throw new Error('the three requests never became active together');
    const health = await request(port, 'GET', '/health');
    if (health.json.active_sequences + health.json.queue_depth >= 3) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  child.kill('SIGTERM');
  // Once the child has handled the signal, new connections are refused (or, racing the close, told 503).
  for (const started = Date.now(); ; ) {
    if (Date.now() - started > 10000) throw new Error('the server kept accepting requests after SIGTERM');
    const refused = await request(port, 'GET', '/health').then(
      (health) => health.status === 503,
      (error: Error) => /ECONNREFUSED|ECONNRESET|socket hang up/.test(error.message),
    );
    if (refused) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const answers = await inFlight;
  expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
  // Each ran to its length (or to end-of-text, which a random model may produce): none was cut short by the stop.
  for (const answer of [answers[0], answers[2]]) {
    const choice = answer.json.choices[0];
    expect(choice.finish_reason === 'length' ? answer.json.usage.completion_tokens : maxTokens).toBe(maxTokens);
  }
  expect(answers[1].events[answers[1].events.length - 1]).toBe('[DONE]');
  expect(await exited).toBe(0);
  expect(stderr).toMatch(/SIGTERM/);
  expect(stderr).toMatch(/drained/);
}
