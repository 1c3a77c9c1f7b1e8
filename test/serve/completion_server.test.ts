import { CompletionServer } from '../../src/serve/completion_server';
import { createFakeServeModel } from '../../src/serve/fake_model';
import { request, streamedText } from '../../src/serve/completion_client';

// The server against a deterministic fake runtime: scheduling, validation and HTTP behaviour without the addon.

async function start(options: { delayMs?: number; slots?: number; maxBatch?: number; maxQueue?: number; maxContext?: number } = {}) {
  const model = createFakeServeModel({ slots: options.slots ?? 64, delayMs: options.delayMs, maxContext: options.maxContext });
  const server = new CompletionServer(model, { maxBatch: options.maxBatch, maxQueue: options.maxQueue });
  const { port } = await server.listen(0, '127.0.0.1');
  return { model, server, port };
}

const completion = (port: number, body: object | string) => request(port, 'POST', '/v1/completions', body);

describe('serve (fake runtime)', () => {
  test('32 concurrent temperature-0 requests equal the single-request answer, and were batched', async () => {
    const { model, server, port } = await start({ delayMs: 2 });
    const body = { prompt: 'In the beginning', max_tokens: 24, temperature: 0 };
    const single = await completion(port, body);
    expect(single.status).toBe(200);
    const reference = single.json.choices[0].text;
    expect(reference.length).toBeGreaterThan(0);
    const answers = await Promise.all(Array.from({ length: 32 }, () => completion(port, body)));
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.json.choices[0].text).toBe(reference);
      expect(answer.json.usage.completion_tokens).toBe(single.json.usage.completion_tokens);
    }
    expect(model.evaluator.maxSlotsInOneCall).toBeGreaterThan(8);
    await server.drain();
  });

  test('mixed prompts decode together and each equals its own single-request answer', async () => {
    const { server, port } = await start({ delayMs: 1, maxBatch: 8 });
    const prompts = Array.from({ length: 20 }, (_, i) => 'prompt number ' + i + ' ' + 'x'.repeat(i * 13));
    const single: string[] = [];
    for (const prompt of prompts) single.push((await completion(port, { prompt, max_tokens: 10 + (prompts.indexOf(prompt) % 7), temperature: 0 })).json.choices[0].text);
    const together = await Promise.all(prompts.map((prompt, i) => completion(port, { prompt, max_tokens: 10 + (i % 7), temperature: 0 })));
    expect(together.map((r) => r.json.choices[0].text)).toEqual(single);
    await server.drain();
  });

  test('seeded sampling is reproducible and independent of the batch', async () => {
    const { server, port } = await start({ delayMs: 1 });
    const body = { prompt: 'seeded', max_tokens: 20, temperature: 0.9, top_p: 0.8, seed: 42 };
    const alone = (await completion(port, body)).json.choices[0].text;
    const crowd = await Promise.all([
      ...Array.from({ length: 6 }, (_, i) => completion(port, { ...body, seed: 100 + i })),
      completion(port, body),
    ]);
    expect(crowd[6].json.choices[0].text).toBe(alone);
    const others = new Set(crowd.slice(0, 6).map((r) => r.json.choices[0].text));
    expect(others.size).toBeGreaterThan(1);
    await server.drain();
  });

  test('a stream reassembles to the non-stream text', async () => {
    const { server, port } = await start();
    for (const body of [
      { prompt: 'stream me', max_tokens: 40, temperature: 0 },
      { prompt: 'stream me', max_tokens: 40, temperature: 0.7, seed: 7, stop: ['e', 'zz'] },
    ]) {
      const plain = await completion(port, body);
      const streamed = await completion(port, { ...body, stream: true, stream_options: { include_usage: true } });
      expect(streamed.status).toBe(200);
      expect(streamed.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(streamed.events[streamed.events.length - 1]).toBe('[DONE]');
      expect(streamedText(streamed.events)).toBe(plain.json.choices[0].text);
      const chunks = streamed.events.slice(0, -1).map((e) => JSON.parse(e));
      const last = chunks.filter((c) => c.choices.length).pop();
      expect(last.choices[0].finish_reason).toBe(plain.json.choices[0].finish_reason);
      expect(chunks[chunks.length - 1].usage).toEqual(plain.json.usage);
    }
    await server.drain();
  });

  test('stop strings cut the text and finish with reason stop', async () => {
    const { server, port } = await start();
    const free = (await completion(port, { prompt: 'abc', max_tokens: 60, temperature: 0 })).json.choices[0];
    expect(free.finish_reason).toBe('length');
    const stop = free.text.slice(10, 12);
    const cut = (await completion(port, { prompt: 'abc', max_tokens: 60, temperature: 0, stop: [stop] })).json.choices[0];
    expect(cut.finish_reason).toBe('stop');
    expect(cut.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
    await server.drain();
  });

  test('bad requests get 400 with an OpenAI error body naming the field', async () => {
    const { server, port } = await start({ maxContext: 128 });
    const cases: [object | string, string | null][] = [
      ['{"prompt": "x", ', null],
      ['[1, 2]', null],
      [{ prompt: 'x', max_tokens: -5 }, 'max_tokens'],
      [{ prompt: 'x', max_tokens: 0 }, 'max_tokens'],
      [{ prompt: 'x', max_tokens: 129 }, 'max_tokens'],
      [{ prompt: 'x', max_tokens: 2.5 }, 'max_tokens'],
      [{ prompt: 'x', max_tokens: '5' }, 'max_tokens'],
      [{ prompt: 'x'.repeat(120), max_tokens: 20 }, 'max_tokens'],
      [{ prompt: 'x'.repeat(200) }, 'prompt'],
      [{ prompt: 'x', temperature: -0.1 }, 'temperature'],
      [{ prompt: 'x', top_p: 0 }, 'top_p'],
      [{ prompt: 'x', top_p: 1.5 }, 'top_p'],
      [{ prompt: 'x', stream: 'yes' }, 'stream'],
      [{ prompt: 42 }, 'prompt'],
      [{ prompt: 'x', stop: ['', 'a'] }, 'stop'],
      [{ prompt: 'x', seed: 1.5 }, 'seed'],
      [{ prompt: 'x', n: 0 }, 'n'],
      [{ prompt: 'x', n: 1000 }, 'n'],
      [{ prompt: 'x', logprobs: 21 }, 'logprobs'],
      [{ prompt: 'x', max_tokens: 0 }, 'max_tokens'],
      [{ prompt: [] }, 'prompt'],
      [{ prompt: ['a', 1] }, 'prompt'],
      [{ prompt: [1, -2] }, 'prompt'],
      [{ prompt: [300] }, 'prompt'],
      [{ prompt: 'x', best_of: 3 }, 'best_of'],
      [{ prompt: 'x', frobnicate: true }, 'frobnicate'],
    ];
    for (const [body, param] of cases) {
      const answer = await completion(port, body);
      expect({ body, status: answer.status }).toEqual({ body, status: 400 });
      expect(answer.json.error.type).toBe('invalid_request_error');
      expect(answer.json.error.param).toBe(param);
      expect(typeof answer.json.error.message).toBe('string');
    }
    const huge = await completion(port, { prompt: 'x'.repeat(2 << 20) });
    expect(huge.status).toBe(413);
    const wrongModel = await completion(port, { model: 'gpt-4', prompt: 'x' });
    expect(wrongModel.status).toBe(404);
    expect((await completion(port, { model: 'fake-byte-model', prompt: 'x', max_tokens: 2, n: 1, user: 'u' })).status).toBe(200);
    await server.drain();
  });

  test('models, health, metrics and unknown routes', async () => {
    const { server, port } = await start();
    const models = await request(port, 'GET', '/v1/models');
    expect(models.json.data[0].id).toBe('fake-byte-model');
    expect((await request(port, 'GET', '/v1/models/fake-byte-model')).json.id).toBe('fake-byte-model');
    expect((await request(port, 'GET', '/v1/models/other')).status).toBe(404);
    expect((await request(port, 'GET', '/v1/models/%E0%A4%A')).status).toBe(400);
    expect((await request(port, 'GET', '/health')).json.status).toBe('ok');
    await completion(port, { prompt: 'count me', max_tokens: 5, temperature: 0 });
    await completion(port, { prompt: 'x', max_tokens: -5 });
    const metrics = await request(port, 'GET', '/metrics');
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    expect(metrics.text).toMatch(/^dsmoe_requests_total\{status="200"\} \d+$/m);
    expect(metrics.text).toMatch(/^dsmoe_requests_total\{status="400"\} 2$/m); // max_tokens -5 and the malformed model id
    expect(metrics.text).toMatch(/^dsmoe_generated_tokens_total 5$/m);
    expect(metrics.text).toMatch(/^dsmoe_completion_duration_seconds_count 1$/m);
    expect(metrics.text).toMatch(/^dsmoe_completion_duration_seconds_bucket\{le="\+Inf"\} 1$/m);
    for (const name of ['dsmoe_generated_tokens_per_second', 'dsmoe_queue_depth', 'dsmoe_decode_batch_size']) {
      expect(metrics.text).toMatch(new RegExp(`^${name} [0-9.e+-]+$`, 'm'));
    }
    expect((await request(port, 'GET', '/nope')).status).toBe(404);
    expect((await request(port, 'GET', '/v1/completions')).status).toBe(405);
    await server.drain();
  });

  test('a full queue answers 429', async () => {
    const { server, port } = await start({ delayMs: 5, maxBatch: 2, maxQueue: 2 });
    const body = { prompt: 'busy', max_tokens: 30, temperature: 0 };
    const answers = await Promise.all(Array.from({ length: 10 }, () => completion(port, body)));
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(4);
    expect(statuses).toContain(429);
    const refused = answers.find((a) => a.status === 429)!;
    expect(refused.json.error.type).toBe('rate_limit_error');
    expect(refused.headers['retry-after']).toBe('1');
    await server.drain();
  });

  test('a client that disconnects cancels its request and frees its slot', async () => {
    const { model, server, port } = await start({ delayMs: 10, maxBatch: 1 });
    const controller = new AbortController();
    const abandoned = request(port, 'POST', '/v1/completions', { prompt: 'long', max_tokens: 400, temperature: 0, stream: true }, { signal: controller.signal });
    abandoned.catch(() => {});
    while (server.scheduler.activeSequences === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    await server.scheduler.idle();
    expect(server.scheduler.activeSequences).toBe(0);
    expect(model.evaluator.clearedSlots).toContain(0);
    const steps = model.evaluator.batchSizes.length;
    expect(steps).toBeLessThan(100); // far fewer than the 400 tokens asked for
    // The only slot is free again: the next request is served.
    const next = await completion(port, { prompt: 'next', max_tokens: 3, temperature: 0 });
    expect(next.status).toBe(200);
    await server.drain();
  });

  test('a non-streaming client that disconnects is cancelled too', async () => {
    const { server, port } = await start({ delayMs: 10, maxBatch: 2 });
    const controller = new AbortController();
    const abandoned = request(port, 'POST', '/v1/completions', { prompt: 'quiet', max_tokens: 400, temperature: 0 }, { signal: controller.signal });
    abandoned.catch(() => {});
    while (server.scheduler.activeSequences === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    await server.scheduler.idle();
    expect(server.scheduler.activeSequences).toBe(0);
    const metrics = await request(port, 'GET', '/metrics');
    expect(Number(/^dsmoe_generated_tokens_total (\d+)$/m.exec(metrics.text)![1])).toBeLessThan(100);
    await server.drain();
  });

  test('drain finishes in-flight requests and refuses new ones', async () => {
    const { server, port } = await start({ delayMs: 5 });
    const inFlight = Promise.all(Array.from({ length: 4 }, () => completion(port, { prompt: 'finish me', max_tokens: 30, temperature: 0 })));
    while (server.scheduler.activeSequences + server.scheduler.queueDepth < 4) await new Promise((resolve) => setTimeout(resolve, 2));
    const drained = server.drain();
    const answers = await inFlight;
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    expect(answers.every((a) => a.json.usage.completion_tokens === 30)).toBe(true);
    await drained;
    await expect(completion(port, { prompt: 'late' })).rejects.toThrow();
  });
});
