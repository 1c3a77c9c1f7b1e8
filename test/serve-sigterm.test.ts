import { spawn } from 'node:child_process';
import path from 'node:path';
import { request } from '../src/serve/completion-client';

// SIGTERM in a real child process: the server stops accepting, finishes what it accepted, then exits 0.
// The child runs the TypeScript sources through the notebook runner's require hook (no build needed).

const ROOT = path.resolve(__dirname, '..');
const CHILD = `
require('./scripts/run-notebooks.js').registerTypeScript();
const { runServer } = require('./src/serve/run-server.ts');
const { createFakeServeModel } = require('./src/serve/fake-model.ts');
runServer(createFakeServeModel({ delayMs: 5 }), { port: 0, host: '127.0.0.1' }).then(() => process.exit(0));
`;

test('SIGTERM drains in-flight requests, refuses new ones, and exits 0', async () => {
  const child = spawn(process.execPath, ['-e', CHILD], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
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
  const body = { prompt: 'drain me', max_tokens: 60, temperature: 0 };
  const inFlight = Promise.all([
    request(port, 'POST', '/v1/completions', body),
    request(port, 'POST', '/v1/completions', { ...body, stream: true }),
    request(port, 'POST', '/v1/completions', body),
  ]);
  await new Promise((resolve) => setTimeout(resolve, 80));
  child.kill('SIGTERM');
  await new Promise((resolve) => setTimeout(resolve, 40));
  await expect(request(port, 'GET', '/health')).rejects.toThrow(/ECONNREFUSED|ECONNRESET|socket hang up/);
  const answers = await inFlight;
  expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
  expect(answers[0].json.usage.completion_tokens).toBe(60);
  expect(answers[1].events[answers[1].events.length - 1]).toBe('[DONE]');
  expect(await exited).toBe(0);
  expect(stderr).toMatch(/SIGTERM/);
  expect(stderr).toMatch(/drained/);
}, 30000);
