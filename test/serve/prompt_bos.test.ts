/**
 * The BOS an imported Llama-style tokenizer puts before prompts, through the server and the official openai client:
 * text prompts get it (as vLLM's completions tokenize with add_special_tokens=True), token-id prompts are taken as
 * sent, a chat template that writes `{{ bos_token }}` gives exactly one, and the plain default gets the tokenizer's.
 * The model is FakeBatchEvaluator with the 1500-id fixture tokenizer (test/fixtures/tokenizers/llama_bpe_legacy);
 * what reached the model is read from a recording wrapper around it.
 */
import OpenAI from 'openai';
import path from 'node:path';
import { loadAnyTokenizer } from '../../src/interop/hf_tokenizer';
import { Sampler } from '../../src/sampling';
import type { BatchEvaluator, ServeModel } from '../../src/serve/batch_evaluator';
import { PLAIN_CHAT_TEMPLATE, compileChatTemplate, loadChatTemplate } from '../../src/serve/chat_template';
import { CompletionServer } from '../../src/serve/completion_server';
import { FakeBatchEvaluator } from '../../src/serve/fake_batch_evaluator';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'tokenizers', 'llama_bpe_legacy');
const tokenizer = loadAnyTokenizer(FIXTURE);
const BOS = 1;
// Mistral's instruct template, shortened: it writes the BOS itself
const MISTRAL_STYLE =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  '{% else %}{{ message.content + eos_token }}{% endif %}{% endfor %}';

/** The tokens of the sequence started last (position 0), as the model received them. */
let lastPrompt: number[] = [];
function recording(inner: BatchEvaluator): BatchEvaluator {
  const bySlot = new Map<number, number[]>();
  return {
    evaluate(tokens, slots, positions, outputRows) {
      for (let i = 0; i < tokens.length; i++) {
        if (positions[i] === 0) bySlot.set(slots[i], (lastPrompt = []));
        bySlot.get(slots[i])!.push(tokens[i]);
      }
      return inner.evaluate(tokens, slots, positions, outputRows);
    },
    clearSlot: (slot) => inner.clearSlot(slot),
  };
}

const model: ServeModel = {
  id: 'fake-sp',
  evaluator: recording(new FakeBatchEvaluator(tokenizer.vocabSize, 4, tokenizer.eosId)),
  tokenizer,
  vocabSize: tokenizer.vocabSize,
  slots: 4,
  maxContext: 256,
  chatTemplate: loadChatTemplate(FIXTURE), // the fixture has no template: the plain default
  createSampler: (sampling) => new Sampler(sampling),
  dispose: () => {},
};
let server: CompletionServer;
let client: OpenAI;

beforeAll(async () => {
  server = new CompletionServer(model, { maxBatch: 4, maxQueue: 8 });
  const { port } = await server.listen(0, '127.0.0.1');
  client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'not-checked', maxRetries: 0 });
});
afterAll(() => server.drain());

const PROMPT = 'In the beginning God created';
const settings = { model: 'fake-sp', temperature: 0, seed: 1 } as const;

test('the fixture tokenizer adds <s> = 1', () => {
  expect(tokenizer.bosId).toBe(BOS);
  expect(tokenizer.encode(PROMPT)).not.toContain(BOS);
});

test('a text prompt reaches the model after <s>, and prompt_tokens counts it', async () => {
  const answer = await client.completions.create({ ...settings, prompt: PROMPT, max_tokens: 3 });
  const text = tokenizer.encode(PROMPT);
  expect(lastPrompt.slice(0, text.length + 1)).toEqual([BOS, ...text]);
  expect(answer.usage?.prompt_tokens).toBe(text.length + 1);
  // a prompt array: each prompt counted with its BOS
  const two = await client.completions.create({ ...settings, prompt: [PROMPT, 'And'], max_tokens: 1 });
  expect(two.usage?.prompt_tokens).toBe(text.length + 1 + tokenizer.encode('And').length + 1);
});

test('a token-id prompt is taken as sent: no BOS is added', async () => {
  const ids = tokenizer.encode(PROMPT);
  const answer = await client.completions.create({ ...settings, prompt: ids, max_tokens: 2 });
  expect(lastPrompt.slice(0, ids.length)).toEqual(ids);
  expect(answer.usage?.prompt_tokens).toBe(ids.length);
});

test('echo with logprobs: the text as sent; <s> is the first, unscored prompt token at offset 0 with no width', async () => {
  const answer = await client.completions.create({ ...settings, prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 2 });
  const choice = answer.choices[0];
  expect(choice.text).toBe(PROMPT);
  const { tokens, token_logprobs, text_offset } = choice.logprobs!;
  const text = tokenizer.encode(PROMPT);
  expect(tokens!.length).toBe(text.length + 1);
  expect(tokens![0]).toBe('<s>');
  expect(token_logprobs![0]).toBeNull();
  expect(token_logprobs!.slice(1).every((p) => typeof p === 'number')).toBe(true);
  expect(text_offset![0]).toBe(0);
  // the text's tokens index the echoed text: "▁In" (" In") starts it without the dummy-prefix space
  for (let i = 1; i < tokens!.length; i++) {
    const shown = i === 1 ? tokens![i].replace(/^ /, '') : tokens![i];
    expect(PROMPT.slice(text_offset![i]).startsWith(shown)).toBe(true);
  }
  expect(answer.usage?.prompt_tokens).toBe(text.length + 1);
  // streamed: the first chunk echoes the prompt with the same entries
  const stream = await client.completions.create({ ...settings, prompt: PROMPT, max_tokens: 1, echo: true, logprobs: 2, stream: true });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const first = chunks[0].choices[0];
  expect(first.text).toBe(PROMPT);
  expect(first.logprobs?.tokens).toEqual(tokens);
  expect(first.logprobs?.text_offset).toEqual(text_offset);
});

test('chat with a template writing {{ bos_token }}: exactly one BOS, none added by the server', async () => {
  model.chatTemplate = compileChatTemplate(MISTRAL_STYLE, { bos_token: '<s>', eos_token: '</s>' }, 'mistral-style');
  try {
    const answer = await client.chat.completions.create({ ...settings, messages: [{ role: 'user', content: 'Who created the heaven?' }], max_tokens: 2 });
    const expected = tokenizer.encode('<s>[INST] Who created the heaven? [/INST]');
    expect(expected[0]).toBe(BOS);
    expect(lastPrompt.slice(0, expected.length)).toEqual(expected);
    expect(lastPrompt.filter((id) => id === BOS)).toEqual([BOS]);
    expect(answer.usage?.prompt_tokens).toBe(expected.length);
  } finally {
    model.chatTemplate = loadChatTemplate(FIXTURE);
  }
});

test("chat with the plain default (no template, no BOS of its own): the tokenizer's BOS, once", async () => {
  expect(model.chatTemplate.source).toBe('plain default');
  const messages = [{ role: 'user' as const, content: 'Who created the heaven?' }];
  const answer = await client.chat.completions.create({ ...settings, messages, max_tokens: 2 });
  const rendered = compileChatTemplate(PLAIN_CHAT_TEMPLATE, {}, 'plain').render(messages);
  const expected = [BOS, ...tokenizer.encode(rendered)];
  expect(lastPrompt.slice(0, expected.length)).toEqual(expected);
  expect(lastPrompt.filter((id) => id === BOS)).toEqual([BOS]);
  expect(answer.usage?.prompt_tokens).toBe(expected.length);
});
