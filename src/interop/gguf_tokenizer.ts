/**
 * dsmoe's tokenizer in GGUF's tokenizer fields, so that llama.cpp tokenizes exactly as `dsmoe` does.
 *
 * dsmoe's tokenizer is GPT-2's byte-level BPE: GPT-2's pre-tokenizer regex, the bytes_to_unicode table, merges by
 * rank, `<|endoftext|>` as the one special token (src/data/tokenizer.ts). llama.cpp's `gpt2` tokenizer model with
 * the `gpt-2` pre-tokenizer is that algorithm: the vocabulary strings and the merges ("left right", rank order) are
 * copied as they are. `<|endoftext|>` is a CONTROL token, used as end of sequence; no BOS/EOS is added to prompts
 * (dsmoe adds none). Ids past the tokenizer's vocabulary (a model's vocab_size may be padded) become UNUSED
 * `[PAD<id>]` tokens, as llama.cpp's own converter writes them, since llama.cpp needs one token per embedding row.
 *
 * Other tokenizers (imported Hugging Face models: Qwen2's split regex, NFC, SentencePiece) are refused rather than
 * mapped approximately: a GGUF whose tokenizer differs from the model's training would load and quietly degrade.
 */
import { UserError } from '../errors';
import { EOS_TOKEN } from '../data/byte_level';
import { loadTokenizer } from '../data/tokenizer';
import { gguf, type GgufValue } from './gguf_writer';

/** llama.cpp's `enum llama_token_type` values that the export uses. */
export const TOKEN_TYPE = { normal: 1, control: 3, unused: 5 } as const;

export interface GgufTokenizer {
  metadata: [string, GgufValue][];
  tokens: string[];
  eosId: number;
}

export function ggufTokenizer(dir: string, vocabSize: number): GgufTokenizer {
  let json: { model: { vocab: Record<string, number>; merges: string[] } };
  let eosId: number;
  try {
    const tokenizer = loadTokenizer(dir);
    json = tokenizer.toHfJson() as typeof json;
    eosId = tokenizer.eosId;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new UserError(
      `${dir}/tokenizer.json: only dsmoe's own byte-level BPE tokenizer (GPT-2 pre-tokenizer) is written to GGUF, so that llama.cpp tokenizes exactly as dsmoe does; this one is not (${reason})`,
    );
  }
  const tokens: string[] = new Array(vocabSize);
  const types = new Int32Array(vocabSize);
  for (const [text, id] of Object.entries(json.model.vocab)) {
    if (id >= vocabSize) throw new UserError(`${dir}/tokenizer.json: token id ${id} is outside the model's vocab_size ${vocabSize}`);
    tokens[id] = text;
    types[id] = id === eosId ? TOKEN_TYPE.control : TOKEN_TYPE.normal;
  }
  if (tokens[eosId] !== EOS_TOKEN) throw new Error(`tokenizer: id ${eosId} should be ${EOS_TOKEN}`);
  for (let id = 0; id < vocabSize; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.unused;
    }
  }
  return {
    tokens,
    eosId,
    metadata: [
      ['tokenizer.ggml.model', gguf.str('gpt2')],
      ['tokenizer.ggml.pre', gguf.str('gpt-2')],
      ['tokenizer.ggml.tokens', gguf.strings(tokens)],
      ['tokenizer.ggml.token_type', gguf.i32s(types)],
      ['tokenizer.ggml.merges', gguf.strings(json.model.merges)],
      ['tokenizer.ggml.bos_token_id', gguf.u32(eosId)],
      ['tokenizer.ggml.eos_token_id', gguf.u32(eosId)],
      ['tokenizer.ggml.add_bos_token', gguf.bool(false)],
      ['tokenizer.ggml.add_eos_token', gguf.bool(false)],
    ],
  };
}
