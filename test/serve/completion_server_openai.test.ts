import OpenAI from 'openai';
import { CompletionServer } from '../../src/serve/completion_server';
import { createFakeServeModel } from '../../src/serve/fake_model';
import { FakeBatchEvaluator } from '../../src/serve/fake_batch_evaluator';
import { request } from '../../src/serve/completion_client';

// The server as OpenAI's official client sees it (the openai npm package, pinned in devDependencies), on the
// deterministic fake runtime: completions, chat, streaming, logprobs, prompt arrays, cancellation and error paths.

async function start(options: { delayMs?: number; maxBatch?: number; maxQueue?: number; maxContext?: number } = {}) {
  const model = createFakeServeModel({ slots: 64, delayMs: options.delayMs, maxContext: options.maxContext });
  const server = new CompletionServer(model, { maxBatch: options.maxBatch, maxQueue: options.maxQueue });
  const { port } = await server.listen(0, '127.0.0.1');
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'not-checked', maxRetries: 0 });
  return { model, server, port, client };
}

const bytes = (text: string) => [...Buffer.from(text, 'utf8')];
/** The byte a logprobs token names: its one character, or OpenAI's `bytes:\\xNN` form for a byte that is no text alone. */
const tokenByte = (token: string) => (token.startsWith('bytes:') ? parseInt(token.slice('bytes:\\x'.length), 16) : bytes(token)[0]);

/** Independent reference: log-softmax (f64) of the fake runtime's logits for `prefix`, evaluated alone on a fresh evaluator. */
async function referenceLogSoftmax(prefix: number[]): Promise<number[]> {
  const evaluator = new FakeBatchEvaluator(257, 1, 256);
  const T = prefix.length;
  const row = await evaluator.evaluate(Int32Array.from(prefix), new Int32Array(T), Int32Array.from(prefix, (_, i) => i), Int32Array.of(T - 1));
  const max = Math.max(...row);
  const logZ = max + Math.log(row.reduce((sum, l) => sum + Math.exp(l - max), 0));
  return [...row].map((l) => l - logZ);
}

describe('serve with the official openai client (fake runtime)', () => {
  test('completions: the client gets what a raw request gets; token prompts equal their text', async () => {
    const { server, port, client } = await start();
    const body = { model: 'fake-byte-model', prompt: 'In the beginning', max_tokens: 20, temperature: 0 };
    const raw = (await request(port, 'POST', '/v1/completions', body)).json;
    const answer = await client.completions.create(body);
    expect(answer.object).toBe('text_completion');
    expect(answer.choices[0].text).toBe(raw.choices[0].text);
    expect(answer.choices[0].text.length).toBeGreaterThan(0);
    expect(answer.usage).toEqual({ prompt_tokens: 16, completion_tokens: raw.usage.completion_tokens, total_tokens: 16 + raw.usage.completion_tokens });
    const byIds = await client.completions.create({ ...body, prompt: bytes('In the beginning') });
    expect(byIds.choices[0].text).toBe(answer.choices[0].text);
    await server.drain();
  });

  test('prompt arrays and n: choice p·n + i answers prompt p with seed + i, each equal to its own request', async () => {
    const { model, server, client } = await start({ delayMs: 1 });
    const prompts = ['first prompt', 'second, longer prompt'];
    const body = { model: 'fake-byte-model', max_tokens: 12, temperature: 0.9, seed: 7 };
    const answer = await client.completions.create({ ...body, prompt: prompts, n: 3 });
    expect(answer.choices.map((c) => c.index)).toEqual([0, 1, 2, 3, 4, 5]);
    for (const [p, prompt] of prompts.entries()) {
      for (let i = 0; i < 3; i++) {
        const alone = await client.completions.create({ ...body, prompt, seed: 7 + i });
        expect(answer.choices[p * 3 + i].text).toBe(alone.choices[0].text);
      }
    }
    expect(new Set(answer.choices.slice(0, 3).map((c) => c.text)).size).toBeGreaterThan(1);
    expect(answer.usage!.prompt_tokens).toBe(prompts.join('').length); // each prompt once, not once per choice
    expect(model.evaluator.maxSlotsInOneCall).toBeGreaterThanOrEqual(6); // the six choices were batched together
    await server.drain();
  });

  test('chat: messages go through the plain template; stream equals non-stream, with role, finish and usage chunks', async () => {
    const { server, port, client } = await start();
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hello' }] },
    ];
    const chat = await client.chat.completions.create({ model: 'fake-byte-model', messages, max_completion_tokens: 30, temperature: 0 });
    expect(chat.object).toBe('chat.completion');
    expect(chat.choices[0].message.role).toBe('assistant');
    // The same prompt written out by hand, sent as a plain completion.
    const plain = await request(port, 'POST', '/v1/completions', { prompt: 'System: Be brief.\n\nUser: Hello\n\nAssistant:', max_tokens: 30, temperature: 0 });
    expect(chat.choices[0].message.content).toBe(plain.json.choices[0].text);
    expect(chat.choices[0].finish_reason).toBe(plain.json.choices[0].finish_reason);
    expect(chat.usage).toEqual(plain.json.usage);

    const stream = await client.chat.completions.create({ model: 'fake-byte-model', messages, max_tokens: 30, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id)).toBe(true);
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(chat.choices[0].message.content);
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finish.map((c) => c.choices[0].finish_reason)).toEqual([chat.choices[0].finish_reason]);
    const last = chunks[chunks.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(chat.usage);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    await server.drain();
  });

  test('chat: stop, seed and n', async () => {
    const { server, client } = await start();
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Tell me something' }];
    const base = { model: 'fake-byte-model', messages, max_tokens: 40, temperature: 0.8, seed: 3 };
    const free = await client.chat.completions.create(base);
    const again = await client.chat.completions.create(base);
    expect(again.choices[0].message.content).toBe(free.choices[0].message.content);
    const text = free.choices[0].message.content!;
    const stop = text.slice(8, 10);
    const cut = await client.chat.completions.create({ ...base, stop: [stop] });
    expect(cut.choices[0].message.content).toBe(text.slice(0, text.indexOf(stop)));
    expect(cut.choices[0].finish_reason).toBe('stop');
    const many = await client.chat.completions.create({ ...base, n: 3 });
    expect(many.choices[0].message.content).toBe(text);
    const second = await client.chat.completions.create({ ...base, seed: 4 });
    expect(many.choices[1].message.content).toBe(second.choices[0].message.content);
    await server.drain();
  });

  test('completions logprobs equal the log-softmax of the runtime logits for the same prefix', async () => {
    const { server, client } = await start();
    const prompt = 'Score me';
    const answer = await client.completions.create({ model: 'fake-byte-model', prompt, max_tokens: 10, temperature: 0.7, seed: 11, logprobs: 3 });
    const { text, logprobs } = answer.choices[0];
    const ids = logprobs!.tokens!.map(tokenByte);
    expect(Buffer.from(ids).toString('utf8')).toBe(text);
    expect(logprobs!.tokens!.some((t) => t.startsWith('bytes:'))).toBe(true); // this seed draws a byte that is no text alone
    const prefix = bytes(prompt);
    for (const [i, id] of ids.entries()) {
      const reference = await referenceLogSoftmax(prefix);
      expect(logprobs!.token_logprobs![i]).toBeCloseTo(reference[id], 9);
      const top = Object.entries(logprobs!.top_logprobs![i]);
      const best = reference.slice(0, 256).map((lp, t) => [t, lp] as const).sort((a, b) => b[1] - a[1]).slice(0, 3);
      const name = (t: number) => (t < 128 ? String.fromCharCode(t) : `bytes:\\x${t.toString(16)}`);
      for (const [t, lp] of best) expect(logprobs!.top_logprobs![i][name(t)]).toBeCloseTo(lp, 9);
      expect(top.length).toBeGreaterThanOrEqual(3);
      expect(top.length).toBeLessThanOrEqual(4); // the top 3, plus the sampled token when it is not among them
      expect(logprobs!.text_offset![i]).toBe(Buffer.from(ids.slice(0, i)).toString('utf8').length);
      prefix.push(id);
    }
    await server.drain();
  });

  test('echo with logprobs and max_tokens 0 scores the prompt (an evaluation harness log-likelihood)', async () => {
    const { server, client } = await start();
    const prompt = 'The quick brown fox';
    const answer = await client.completions.create({ model: 'fake-byte-model', prompt, max_tokens: 0, echo: true, logprobs: 1, temperature: 0 });
    const { text, logprobs } = answer.choices[0];
    expect(text).toBe(prompt);
    expect(logprobs!.tokens!.join('')).toBe(prompt);
    expect(logprobs!.token_logprobs![0]).toBeNull();
    expect(logprobs!.top_logprobs![0]).toBeNull();
    const ids = bytes(prompt);
    for (let i = 1; i < ids.length; i++) {
      const reference = await referenceLogSoftmax(ids.slice(0, i));
      expect(logprobs!.token_logprobs![i]).toBeCloseTo(reference[ids[i]], 9);
    }
    expect(answer.usage!.completion_tokens).toBe(0);
    // Echo with generation: the prompt, then the same text a plain request generates.
    const plain = await client.completions.create({ model: 'fake-byte-model', prompt, max_tokens: 8, temperature: 0 });
    const echoed = await client.completions.create({ model: 'fake-byte-model', prompt, max_tokens: 8, temperature: 0, echo: true, logprobs: 0 });
    expect(echoed.choices[0].text).toBe(prompt + plain.choices[0].text);
    expect(echoed.choices[0].logprobs!.tokens!.join('')).toBe(prompt + plain.choices[0].text);
    expect(echoed.choices[0].logprobs!.token_logprobs!.slice(1, ids.length)).toEqual(logprobs!.token_logprobs!.slice(1));
    await server.drain();
  });

  test('chat logprobs: the chosen token and top_logprobs alternatives, with bytes', async () => {
    const { server, client } = await start();
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Hi' }];
    const answer = await client.chat.completions.create({ model: 'fake-byte-model', messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 });
    const content = answer.choices[0].logprobs!.content!;
    expect(content.map((c) => c.token).join('')).toBe(answer.choices[0].message.content);
    const prefix = bytes('User: Hi\n\nAssistant:');
    for (const entry of content) {
      const reference = await referenceLogSoftmax(prefix);
      expect(entry.bytes).toEqual(bytes(entry.token));
      expect(entry.logprob).toBeCloseTo(reference[entry.bytes![0]], 9);
      expect(entry.top_logprobs.length).toBe(2);
      expect(entry.top_logprobs[0].token).toBe(entry.token); // greedy: the chosen token is the most likely
      expect(entry.top_logprobs[0].logprob).toBeGreaterThanOrEqual(entry.top_logprobs[1].logprob);
      prefix.push(entry.bytes![0]);
    }
    const streamed = await client.chat.completions.create({ model: 'fake-byte-model', messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2, stream: true });
    const pieces: OpenAI.Chat.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of streamed) pieces.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(pieces).toEqual(content);
    await server.drain();
  });

  test('streamed completions with prompt arrays: every choice reassembles to its non-stream text', async () => {
    const { server, client } = await start();
    const body = { model: 'fake-byte-model', prompt: ['one', 'two'], n: 2, max_tokens: 16, temperature: 0.9, seed: 5, logprobs: 2 };
    const whole = await client.completions.create(body);
    const stream = await client.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
    const texts = ['', '', '', ''];
    const finishes: (string | null)[] = [null, null, null, null];
    const logprobs = texts.map(() => ({ tokens: [] as string[], token_logprobs: [] as number[], top_logprobs: [] as object[], text_offset: [] as number[] }));
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        texts[choice.index] += choice.text;
        for (const key of ['tokens', 'token_logprobs', 'top_logprobs', 'text_offset'] as const) {
          (logprobs[choice.index][key] as unknown[]).push(...((choice.logprobs?.[key] as unknown[] | undefined) ?? []));
        }
        if (choice.finish_reason) finishes[choice.index] = choice.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(texts).toEqual(whole.choices.map((c) => c.text));
    expect(logprobs).toEqual(whole.choices.map((c) => c.logprobs));
    expect(finishes).toEqual(whole.choices.map((c) => c.finish_reason));
    expect(usage).toEqual(whole.usage);
    await server.drain();
  });

  test('cancelling a stream through the client frees its slot', async () => {
    const { model, server, client } = await start({ delayMs: 10, maxBatch: 1 });
    const controller = new AbortController();
    const stream = await client.completions.create({ model: 'fake-byte-model', prompt: 'long', max_tokens: 400, temperature: 0, stream: true }, { signal: controller.signal });
    let chunks = 0;
    try {
      for await (const _ of stream) if (++chunks === 3) controller.abort();
    } catch {
      // the client may end the iteration quietly or with an abort error: either way the connection is gone
    }
    expect(chunks).toBe(3);
    await server.scheduler.idle();
    expect(server.scheduler.activeSequences).toBe(0);
    expect(model.evaluator.clearedSlots).toContain(0);
    expect(model.evaluator.batchSizes.length).toBeLessThan(100);
    const next = await client.chat.completions.create({ model: 'fake-byte-model', messages: [{ role: 'user', content: 'next' }], max_tokens: 3 });
    expect(next.choices[0].message.content!.length).toBeGreaterThanOrEqual(0);
    expect(next.usage!.completion_tokens).toBeGreaterThan(0);
    await server.drain();
  });

  test('400, 404 and 429 reach the client as its typed errors', async () => {
    const { server, client } = await start({ delayMs: 5, maxBatch: 1, maxQueue: 1, maxContext: 128 });
    const bad = async (call: Promise<unknown>, status: number, param: string | null) => {
      const error = await call.then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(OpenAI.APIError);
      expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(status);
      if (param !== null) expect((error as { param?: string }).param).toBe(param);
    };
    const model = 'fake-byte-model';
    await bad(client.completions.create({ model, prompt: 'x', max_tokens: -5 }), 400, 'max_tokens');
    await bad(client.chat.completions.create({ model, messages: [] }), 400, 'messages');
    await bad(client.chat.completions.create({ model, messages: [{ role: 'tool', content: 'x', tool_call_id: 'a' }] }), 400, 'messages[0]');
    await bad(client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }), 400, 'top_logprobs');
    await bad(client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x'.repeat(200) }] }), 400, 'prompt');
    await bad(client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], max_tokens: 5, max_completion_tokens: 6 }), 400, null);
    await bad(client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }), 404, 'model');
    await bad(client.models.retrieve('gpt-4o'), 404, 'model');
    // One slot and one queue place: of five concurrent requests at least two are refused with 429.
    const body = { model, messages: [{ role: 'user' as const, content: 'busy' }], max_tokens: 30, temperature: 0 };
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => client.chat.completions.create(body)));
    const refused = outcomes.filter((o) => o.status === 'rejected').map((o) => (o as PromiseRejectedResult).reason);
    expect(refused.length).toBeGreaterThanOrEqual(2);
    for (const error of refused) expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBeGreaterThanOrEqual(2);
    await server.drain();
  });
});
