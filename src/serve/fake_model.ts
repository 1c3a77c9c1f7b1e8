import { Sampler } from '../sampling';
import type { ServeModel, ServeTokenizer } from './batch_evaluator';
import { FakeBatchEvaluator } from './fake_batch_evaluator';
import { PLAIN_CHAT_TEMPLATE, compileChatTemplate } from './chat_template';

/** Bytes 0–255 plus end-of-text 256: the same layout as the project's byte tokenizer. */
const byteTokenizer: ServeTokenizer = {
  encode: (text) => [...Buffer.from(text, 'utf8')],
  decode: (ids) => Buffer.from(ids.filter((id) => id < 256)).toString('utf8'),
  tokenBytes: (id) => (id < 256 ? Uint8Array.of(id) : new TextEncoder().encode('<|endoftext|>')),
  eosId: 256,
  vocabSize: 257,
};

/** A served model backed by FakeBatchEvaluator, for tests and for exercising the server without the addon. */
export function createFakeServeModel(options: { slots?: number; maxContext?: number; delayMs?: number } = {}): ServeModel & {
  evaluator: FakeBatchEvaluator;
} {
  const slots = options.slots ?? 64;
  const evaluator = new FakeBatchEvaluator(byteTokenizer.vocabSize, slots, byteTokenizer.eosId, options.delayMs ?? 0);
  return {
    id: 'fake-byte-model',
    evaluator,
    tokenizer: byteTokenizer,
    vocabSize: byteTokenizer.vocabSize,
    slots,
    maxContext: options.maxContext ?? 512,
    chatTemplate: compileChatTemplate(PLAIN_CHAT_TEMPLATE, { eos_token: '<|endoftext|>' }, 'plain default'),
    createSampler: (sampling) => new Sampler(sampling), // the TypeScript reference: the same tokens as the native kernel
    dispose: () => {},
  };
}
