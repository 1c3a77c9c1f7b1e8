/**
 * From a recipe to what the trainer consumes: the tokenizer (trained on the training split only, for BPE) and
 * the token dataset with its seeded train/validation split.
 */
import { UserError } from '../errors';
import type { Recipe } from '../recipe/types';
import { EOS_TOKEN } from './byte_level';
import { loadCorpusText } from './corpus';
import { SPLIT_BLOCKS, TokenDataset, validationBlockMask } from './dataset';
import { buildTokenizer, type Tokenizer } from './tokenizer';

/**
 * Cuts text into `blocks` contiguous pieces of about equal length; each cut moves forward to the next line start
 * (when one is near) and never falls inside a surrogate pair or an <|endoftext|> token.
 */
export function cutTextBlocks(text: string, blocks = SPLIT_BLOCKS): string[] {
  const cuts = [0];
  const nominal = text.length / blocks;
  for (let i = 1; i < blocks; i++) {
    let cut = Math.max(cuts[cuts.length - 1], Math.floor(i * nominal));
    const newline = text.slice(cut, cut + Math.ceil(nominal / 4)).indexOf('\n'); // look only a little ahead
    if (newline >= 0) cut += newline + 1;
    for (let at = Math.max(0, cut - EOS_TOKEN.length + 1); at < cut; at++) {
      if (text.startsWith(EOS_TOKEN, at)) cut = at + EOS_TOKEN.length; // the cut fell inside an EOS token
    }
    const code = text.charCodeAt(cut - 1);
    if (code >= 0xd800 && code <= 0xdbff) cut++; // keep a surrogate pair together
    cuts.push(Math.min(cut, text.length));
  }
  cuts.push(text.length);
  return cuts.slice(0, -1).map((start, i) => text.slice(start, cuts[i + 1]));
}

export interface PreparedData {
  tokenizer: Tokenizer;
  dataset: TokenDataset;
  corpusBytes: number; // UTF-8 size of the whole corpus text
  blockStarts: number[]; // token offset of each split block
}

/**
 * Loads the corpus, builds (or reuses, e.g. on resume) the tokenizer, tokenizes block by block and splits.
 * The split is the same with and without a given tokenizer: it is decided on text blocks by the seed.
 */
export function prepareData(recipe: Recipe, options: { tokenizer?: Tokenizer } = {}): PreparedData {
  const text = loadCorpusText(recipe.data);
  const blocks = cutTextBlocks(text);
  const validation = validationBlockMask(recipe.seed, recipe.data.validation_fraction, blocks.length);
  const tokenizer = options.tokenizer ?? buildTokenizer(recipe.tokenizer, blocks.filter((_, i) => !validation[i]));
  if (tokenizer.vocabSize > recipe.model.vocab_size) {
    throw new UserError(
      `tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${recipe.model.vocab_size}`,
    );
  }
  const encoded = blocks.map((block) => tokenizer.encode(block));
  const tokens = new Int32Array(encoded.reduce((n, ids) => n + ids.length, 0)); // [N]
  const blockStarts: number[] = [];
  let offset = 0;
  for (const ids of encoded) {
    blockStarts.push(offset);
    tokens.set(ids, offset);
    offset += ids.length;
  }
  const dataset = new TokenDataset(tokens, {
    seed: recipe.seed,
    validationFraction: recipe.data.validation_fraction,
    blockStarts,
    tokenBytes: (id) => tokenizer.tokenBytes(id),
    eosId: tokenizer.eosId,
  });
  return { tokenizer, dataset, corpusBytes: Buffer.byteLength(text, 'utf8'), blockStarts };
}
