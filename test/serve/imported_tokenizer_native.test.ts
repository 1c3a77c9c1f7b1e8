/**
 * A plan folder that carries an imported model's SentencePiece-style tokenizer (as `dsmoe convert` copies a Mixtral
 * folder's tokenizer.json) served, generated and evaluated on the native runtime: the tokenizer is read through
 * loadAnyTokenizer, prompts start with its BOS <s> (as transformers' tokenizer(text) and vLLM give them), and
 * generated text keeps the spaces of its "▁" tokens (a random-init model of the tiny shape with the fixture's 1500-id
 * vocabulary; test/fixtures/tokenizers).
 */
import fs from 'node:fs';
import OpenAI from 'openai';
import os from 'node:os';
import path from 'node:path';
import { CompletionServer } from '../../src/serve/completion_server';
import { TINY_SERVE_CONFIG, loadServeModel, writeBenchPlan } from '../../src/serve/load_serve_model';
import type { ServeModel } from '../../src/serve/batch_evaluator';
import { SparseModel } from '../../src/runtime/model';
import { evaluateSparse } from '../../src/runtime/eval';
import { encodePrompt } from '../../src/data/tokenizer';
import { generateCommand } from '../../src/cli/commands/generate';
import yargs from 'yargs';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'tokenizers', 'llama_bpe_legacy');
const reference = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'tokenizers', 'reference.json'), 'utf8'));

let dir: string;
let plan: string;
let model: ServeModel;
let server: CompletionServer;
let port: number;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-serve-sp-'));
  plan = path.join(dir, 'plan');
  writeBenchPlan(plan, { ...TINY_SERVE_CONFIG, vocab_size: 1500 });
  for (const file of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(FIXTURE, file), path.join(plan, file));
  model = await loadServeModel(plan, { threads: 1, slots: 4, id: 'tiny-sp' });
  server = new CompletionServer(model, { maxBatch: 4, maxQueue: 8 });
  port = (await server.listen(0, '127.0.0.1')).port;
});

afterAll(async () => {
  await server?.drain();
  model?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** What generated ids add after a prompt: their token bytes joined. */
const continuation = (ids: number[]) => Buffer.concat(ids.map((id) => model.tokenizer.tokenBytes(id))).toString('utf8');

test('the served model reads the plan folder tokenizer: sentencepiece ids, 1500 tokens, </s>', () => {
  expect(model.tokenizer.vocabSize).toBe(1500);
  expect(model.tokenizer.eosId).toBe(2);
  const row = reference.llama_bpe_legacy[0];
  expect(model.tokenizer.encode(row.text)).toEqual(row.ids);
});

test('completions through the openai client: the text is the generated tokens joined, streamed or not, as dsmoe generate', async () => {
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'not-checked', maxRetries: 0 });
  const body = { model: 'tiny-sp', prompt: 'In the beginning', max_tokens: 24, temperature: 1, top_p: 1, seed: 7 };
  const whole = await client.completions.create(body);
  let streamed = '';
  for await (const chunk of await client.completions.create({ ...body, stream: true })) streamed += chunk.choices[0]?.text ?? '';
  expect(streamed).toBe(whole.choices[0].text);
  const prompt = encodePrompt(model.tokenizer, body.prompt);
  expect(prompt[0]).toBe(1); // <s>
  expect(whole.usage?.prompt_tokens).toBe(prompt.length);

  const sparse = SparseModel.load(plan, { threads: 1 });
  const ids = await sparse.generate(prompt, { maxNewTokens: 24, temperature: 1, topP: 1, seed: 7, stopAtEos: model.tokenizer.eosId });
  await sparse.dispose();
  const generated = ids.filter((id) => id !== model.tokenizer.eosId);
  expect(generated.length).toBeGreaterThan(0);
  expect(whole.choices[0].text).toBe(continuation(generated));
  // sampled from a random model, some tokens start with "▁": their spaces must be in the text (decode() drops a first one)
  const spaced = generated.filter((id) => model.tokenizer.tokenBytes(id)[0] === 0x20).length;
  expect(spaced).toBeGreaterThan(0);
  expect(whole.choices[0].text.split(' ').length - 1).toBeGreaterThanOrEqual(spaced);
  // dsmoe generate reads the prompt the same way: the same text from the same seed
  const args = ['generate', plan, '--prompt', body.prompt, '--max-new-tokens', '24', '--temperature', '1', '--top-p', '1', '--seed', '7', '--threads', '1', '--device', 'cpu'];
  const written: Buffer[] = []; // token bytes as written: a character may be split across byte-fallback tokens
  const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => (written.push(Buffer.from(chunk)), true));
  const log = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    await yargs(args).command(generateCommand as never).strict().parseAsync();
  } finally {
    write.mockRestore();
    log.mockRestore();
  }
  expect(Buffer.concat(written).toString('utf8')).toBe(whole.choices[0].text + '\n');
});

test('eval --text tokenizes with the imported tokenizer; every window starts with <s> and every text token is scored', async () => {
  const text = reference.llama_bpe_legacy.map((row: { text: string }) => row.text).join('\n').repeat(3);
  const file = path.join(dir, 'held_out.txt');
  fs.writeFileSync(file, text);
  const result = await evaluateSparse(plan, { text: file, threads: 1, device: 'cpu', context: 64 });
  // the imported tokenizer's count, not the byte tokenizer's; BOS + 63 text tokens per window of 64
  const ids = model.tokenizer.encode(text);
  expect(result.tokens).toBe(ids.length);
  expect(Buffer.byteLength(text)).toBeGreaterThan(1.5 * ids.length);
  // the reference: each window's logits from the runtime's plain forward, cross-entropy summed naively in f64
  const sparse = SparseModel.load(plan, { threads: 1 });
  let lossSum = 0;
  try {
    for (let start = 0; start < ids.length; start += 63) {
      const window = [1, ...ids.slice(start, start + 63)];
      const logits = await sparse.logits(window);
      const V = sparse.vocabSize;
      for (let t = 0; t + 1 < window.length; t++) {
        const row = Array.from(logits.subarray(t * V, (t + 1) * V));
        const max = Math.max(...row);
        const logZ = max + Math.log(row.reduce((sum, x) => sum + Math.exp(x - max), 0));
        lossSum += logZ - row[window[t + 1]];
      }
    }
  } finally {
    await sparse.dispose();
  }
  expect(result.loss).toBeCloseTo(lossSum / ids.length, 5);
  let bytes = 0;
  for (const id of ids) bytes += model.tokenizer.tokenBytes(id).length;
  expect(result.bits_per_byte).toBeCloseTo(lossSum / Math.LN2 / bytes, 5);
});
