import fs from 'node:fs';
import OpenAI from 'openai';
import os from 'node:os';
import path from 'node:path';
import { CompletionServer } from '../../src/serve/completion_server';
import { loadServeModel, writeBenchPlan } from '../../src/serve/load_serve_model';
import { request, streamedText } from '../../src/serve/completion_client';
import type { ServeModel } from '../../src/serve/batch_evaluator';
import { SparseModel } from '../../src/runtime/model';

// The server on the real native runtime, serving a random-init plan of the tiny shape (byte tokenizer).

let dir: string;
let model: ServeModel;
let server: CompletionServer;
let port: number;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-serve-native-'));
  writeBenchPlan(path.join(dir, 'plan'));
  model = await loadServeModel(path.join(dir, 'plan'), { threads: 1, slots: 32, id: 'tiny-random' });
  server = new CompletionServer(model, { maxBatch: 32, maxQueue: 64 });
  port = (await server.listen(0, '127.0.0.1')).port;
});

afterAll(async () => {
  await server?.drain();
  model?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

const completion = (body: object | string) => request(port, 'POST', '/v1/completions', body);

test('32 concurrent temperature-0 requests equal the single-request answer and dsmoe generate', async () => {
  const prompt = 'In the beginning God created';
  const body = { prompt, max_tokens: 24, temperature: 0 };
  const single = await completion(body);
  expect(single.status).toBe(200);
  const reference = single.json.choices[0].text as string;

  const sparse = SparseModel.load(path.join(dir, 'plan'), { threads: 1 });
  const ids = await sparse.generate(model.tokenizer.encode(prompt), { maxNewTokens: 24, temperature: 0, stopAtEos: model.tokenizer.eosId });
  await sparse.dispose();
  const generated = ids.filter((id) => id !== model.tokenizer.eosId);
  expect(single.json.usage.completion_tokens).toBe(ids.length);
  expect(Buffer.from(reference, 'utf8')).toEqual(Buffer.from(model.tokenizer.decode(generated), 'utf8'));

  const answers = await Promise.all(Array.from({ length: 32 }, () => completion(body)));
  for (const answer of answers) {
    expect(answer.status).toBe(200);
    expect(answer.json.choices[0].text).toBe(reference);
  }
});

test('different prompts decoded together each equal their single-request answer', async () => {
  const prompts = Array.from({ length: 12 }, (_, i) => `Prompt ${i}: ${'and it was so. '.repeat(1 + (i % 5))}`);
  const alone: string[] = [];
  for (const [i, prompt] of prompts.entries()) alone.push((await completion({ prompt, max_tokens: 8 + i, temperature: 0 })).json.choices[0].text);
  const together = await Promise.all(prompts.map((prompt, i) => completion({ prompt, max_tokens: 8 + i, temperature: 0 })));
  expect(together.map((a) => a.json.choices[0].text)).toEqual(alone);
});

test('seeded sampling matches dsmoe generate and does not depend on the batch', async () => {
  const body = { prompt: 'And God said', max_tokens: 16, temperature: 0.8, top_p: 0.9, seed: 1234 };
  const alone = await completion(body);
  const crowd = await Promise.all([completion(body), ...Array.from({ length: 7 }, (_, i) => completion({ ...body, seed: i }))]);
  expect(crowd[0].json.choices[0].text).toBe(alone.json.choices[0].text);

  const sparse = SparseModel.load(path.join(dir, 'plan'), { threads: 1 });
  const ids = await sparse.generate(model.tokenizer.encode(body.prompt), { maxNewTokens: 16, temperature: 0.8, topP: 0.9, seed: 1234, stopAtEos: model.tokenizer.eosId });
  await sparse.dispose();
  expect(alone.json.choices[0].text).toBe(model.tokenizer.decode(ids.filter((id) => id !== model.tokenizer.eosId)));
});

test('a stream reassembles to the non-stream text', async () => {
  const body = { prompt: 'Let there be light', max_tokens: 32, temperature: 0 };
  const plain = await completion(body);
  const streamed = await completion({ ...body, stream: true });
  expect(streamed.events[streamed.events.length - 1]).toBe('[DONE]');
  expect(streamedText(streamed.events)).toBe(plain.json.choices[0].text);
});

test('malformed JSON and max_tokens -5 get 400', async () => {
  const malformed = await completion('{"prompt": ');
  expect(malformed.status).toBe(400);
  expect(malformed.json.error.type).toBe('invalid_request_error');
  const negative = await completion({ prompt: 'x', max_tokens: -5 });
  expect(negative.status).toBe(400);
  expect(negative.json.error.param).toBe('max_tokens');
  expect((await completion({ prompt: 'x', max_tokens: 600 })).json.error.param).toBe('max_tokens');
});

test('a disconnected client frees its slot', async () => {
  const generatedSoFar = async () => {
    const metrics = await request(port, 'GET', '/metrics');
    return Number(/^dsmoe_generated_tokens_total (\d+)$/m.exec(metrics.text)![1]);
  };
  const before = await generatedSoFar();
  const controller = new AbortController();
  const abandoned = request(port, 'POST', '/v1/completions', { prompt: 'long', max_tokens: 500, temperature: 0, stream: true }, { signal: controller.signal });
  abandoned.catch(() => {});
  for (const started = Date.now(); server.scheduler.activeSequences === 0; ) {
    if (Date.now() - started > 10000) throw new Error('the request never became active');
    await new Promise((resolve) => setImmediate(resolve));
  }
  controller.abort();
  await server.scheduler.idle();
  expect(server.scheduler.activeSequences).toBe(0);
  expect(await generatedSoFar() - before).toBeLessThan(500);
});

test('logprobs through the openai client equal the log-softmax of the runtime logits for the same prefix', async () => {
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'not-checked', maxRetries: 0 });
  const prompt = 'In the beginning';
  const answer = await client.completions.create({ model: 'tiny-random', prompt, max_tokens: 8, temperature: 0.8, seed: 9, echo: true, logprobs: 2 });
  const promptIds = model.tokenizer.encode(prompt);
  const generatedIds = (await client.completions.create({ model: 'tiny-random', prompt, max_tokens: 8, temperature: 0.8, seed: 9, logprobs: 0 })).choices[0].logprobs!.tokens!.map(
    (token) => (token.startsWith('bytes:') ? parseInt(token.slice('bytes:\\x'.length), 16) : Buffer.from(token, 'utf8')[0]),
  );
  const ids = [...promptIds, ...generatedIds];
  const { token_logprobs: scores, tokens } = answer.choices[0].logprobs!;
  expect(tokens!.length).toBe(ids.length);
  expect(scores![0]).toBeNull();

  // The reference: one plain forward of the whole sequence, then a naive f64 log-softmax per position.
  const sparse = SparseModel.load(path.join(dir, 'plan'), { threads: 1 });
  const logits = await sparse.logits(ids); // [T, V]
  await sparse.dispose();
  const V = model.vocabSize;
  for (let t = 1; t < ids.length; t++) {
    const row = [...logits.subarray((t - 1) * V, t * V)];
    const total = row.reduce((sum, l) => sum + Math.exp(l), 0);
    expect(Math.abs(scores![t]! - Math.log(Math.exp(row[ids[t]]) / total))).toBeLessThan(1e-4);
  }
});

test('chat through the openai client: the stream equals the answer', async () => {
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'not-checked', maxRetries: 0 });
  const body = { model: 'tiny-random', messages: [{ role: 'user' as const, content: 'Let there be light' }], max_completion_tokens: 16, temperature: 0 };
  const whole = await client.chat.completions.create(body);
  const plain = await completion({ prompt: 'User: Let there be light\n\nAssistant:', max_tokens: 16, temperature: 0 });
  expect(whole.choices[0].message.content).toBe(plain.json.choices[0].text);
  let streamed = '';
  for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) streamed += chunk.choices[0]?.delta.content ?? '';
  expect(streamed).toBe(whole.choices[0].message.content);
});

test('with --expert-cache at the minimum (2 of 8 experts per layer) a batch of requests gets the same text, and /metrics shows the cache', async () => {
  const cached = await loadServeModel(path.join(dir, 'plan'), { threads: 1, slots: 8, id: 'tiny-random', expertCache: { size: '25%' } });
  const cachedServer = new CompletionServer(cached, { maxBatch: 8, maxQueue: 16 });
  const cachedPort = (await cachedServer.listen(0, '127.0.0.1')).port;
  try {
    const prompts = Array.from({ length: 6 }, (_, i) => `Prompt ${i}: ${'and the evening and the morning. '.repeat(1 + (i % 3))}`);
    const bodies = prompts.map((prompt, i) => ({ prompt, max_tokens: 6 + i, temperature: 0 }));
    const resident = await Promise.all(bodies.map((body) => completion(body)));
    const viaCache = await Promise.all(bodies.map((body) => request(cachedPort, 'POST', '/v1/completions', body)));
    expect(viaCache.map((a) => a.json.choices[0].text)).toEqual(resident.map((a) => a.json.choices[0].text));
    const metrics = (await request(cachedPort, 'GET', '/metrics')).text;
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)![1]);
    expect(value('dsmoe_expert_cache_slots')).toBe(2);
    expect(value('dsmoe_expert_cache_misses_total')).toBeGreaterThan(0);
    const hits = value('dsmoe_expert_cache_hits_total');
    expect(value('dsmoe_expert_cache_hit_ratio')).toBeCloseTo(hits / (hits + value('dsmoe_expert_cache_misses_total')), 9);
    expect(value('dsmoe_expert_prefetch_recall')).toBeGreaterThan(0);
    expect(value('dsmoe_expert_prefetch_recall')).toBeLessThanOrEqual(1);
    expect(value('dsmoe_expert_cache_read_bytes_total')).toBeGreaterThan(0);
  } finally {
    await cachedServer.drain();
    cached.dispose();
  }
  // The resident server shows no cache metrics.
  expect((await request(port, 'GET', '/metrics')).text).not.toMatch(/dsmoe_expert_cache/);
});
