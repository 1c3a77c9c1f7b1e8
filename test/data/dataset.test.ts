import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TokenDataset, entropyBits, validationBlockMask } from '../../src/data/dataset';
import { cutTextBlocks, prepareData } from '../../src/data/prepare';
import { Rng } from '../../src/data/random';
import { EOS_TOKEN } from '../../src/data/byte_level';
import { loadRecipe } from '../../src/recipe';

const N = 100_000;
/** Token i has id i, so a window is contiguous in the stream iff its ids are consecutive. */
const identity = Int32Array.from({ length: N }, (_, i) => i);
const lengthOf = (id: number) => 1 + (id % 3);
const make = (seed: number, fraction = 0.05) =>
  new TokenDataset(identity, { seed, validationFraction: fraction, tokenBytes: (id) => new Uint8Array(lengthOf(id)), eosId: -1 });

function inValidation(dataset: TokenDataset, position: number): boolean {
  return dataset.validationRuns.some((run) => position >= run.start && position < run.end);
}

describe('split', () => {
  test('max(1, round(fraction · 64)) validation blocks, chosen by the seed', () => {
    expect(validationBlockMask(1, 0.05).filter(Boolean)).toHaveLength(3);
    expect(validationBlockMask(1, 0.001).filter(Boolean)).toHaveLength(1);
    expect(validationBlockMask(1, 0.5).filter(Boolean)).toHaveLength(32);
    expect(validationBlockMask(1, 0.05)).toEqual(validationBlockMask(1, 0.05));
    expect(validationBlockMask(1, 0.2)).not.toEqual(validationBlockMask(2, 0.2));
    const dataset = make(1, 0.25);
    expect(dataset.trainTokenCount + dataset.validationTokenCount).toBe(N);
    expect(Math.abs(dataset.validationTokenCount - N / 4)).toBeLessThanOrEqual(16); // 16 of 64 blocks, ±rounding
  });
});

describe('training batches', () => {
  test('deterministic from (seed, step) alone; different steps differ', () => {
    const a = make(5).trainBatch(17, 8, 32);
    const b = make(5).trainBatch(17, 8, 32); // a fresh dataset: nothing carried between calls
    expect(a.inputs).toEqual(b.inputs);
    expect(a.targets).toEqual(b.targets);
    expect(make(5).trainBatch(18, 8, 32).inputs).not.toEqual(a.inputs);
    expect(make(6).trainBatch(17, 8, 32).inputs).not.toEqual(a.inputs);
  });

  test('windows are contiguous, targets are inputs shifted by one, never touching validation tokens', () => {
    const dataset = make(3, 0.2);
    const T = 64;
    const problems: string[] = []; // collected, then asserted once (an expect per token is slow)
    for (let step = 0; step < 50; step++) {
      const { inputs, targets } = dataset.trainBatch(step, 16, T);
      expect(inputs.length).toBe(16 * T);
      for (let b = 0; b < 16; b++) {
        for (let t = 0; t < T; t++) {
          const x = inputs[b * T + t];
          if (targets[b * T + t] !== x + 1) problems.push(`step ${step} row ${b} col ${t}: target not shifted`);
          if (t > 0 && x !== inputs[b * T + t - 1] + 1) problems.push(`step ${step} row ${b} col ${t}: not contiguous`);
          if (inValidation(dataset, x)) problems.push(`step ${step} row ${b} col ${t}: validation token ${x}`);
        }
        if (inValidation(dataset, targets[b * T + T - 1])) problems.push(`step ${step} row ${b}: validation target`);
      }
    }
    expect(problems).toEqual([]);
  });

  test('window starts cover the training split uniformly (chi-square over 10 equal bins, 99.9% quantile 27.9)', () => {
    const dataset = new TokenDataset(identity, { seed: 9, validationFraction: 0.01, blockStarts: [0, 50_000], tokenBytes: () => new Uint8Array(1), eosId: -1 });
    // One of the two blocks is validation; the other, 50 000 tokens, is the whole training split.
    const run = dataset.trainRuns[0];
    expect(dataset.trainRuns).toHaveLength(1);
    const bins = new Array(10).fill(0);
    const span = run.end - run.start - 8;
    let draws = 0;
    for (let step = 0; step < 500; step++) {
      const { inputs } = dataset.trainBatch(step, 40, 8);
      for (let b = 0; b < 40; b++) {
        bins[Math.floor(((inputs[b * 8] - run.start) / span) * 10)]++;
        draws++;
      }
    }
    const chi2 = bins.reduce((s, c) => s + (c - draws / 10) ** 2 / (draws / 10), 0);
    expect(chi2).toBeLessThan(27.9);
  });
});

describe('validation windows', () => {
  test('non-overlapping, in text order, inside the validation split, capped by maxTokens', () => {
    const dataset = make(4, 0.1);
    const T = 50;
    const all = dataset.validationWindows(1e9, T);
    const expectedCount = dataset.validationRuns.reduce((n, r) => n + Math.floor((r.end - r.start - 1) / T), 0);
    expect(all.count).toBe(expectedCount);
    const seen = new Set<number>();
    const problems: string[] = [];
    for (let w = 0; w < all.count; w++) {
      for (let t = 0; t < T; t++) {
        const target = all.targets[w * T + t];
        if (target !== all.inputs[w * T + t] + 1) problems.push(`window ${w} col ${t}: target not shifted`);
        if (!inValidation(dataset, target)) problems.push(`window ${w} col ${t}: ${target} is not held out`);
        if (seen.has(target)) problems.push(`window ${w} col ${t}: ${target} predicted twice`);
        seen.add(target);
      }
    }
    expect(problems).toEqual([]);
    expect(all.count).toBeGreaterThan(100);
    expect(dataset.validationWindows(420, T).count).toBe(8);
  });
});

describe('byte statistics', () => {
  test('bytes per token over the validation split (brute-force count)', () => {
    const dataset = make(2, 0.1);
    let bytes = 0;
    let count = 0;
    for (let i = 0; i < N; i++) {
      if (inValidation(dataset, i)) {
        bytes += lengthOf(i);
        count++;
      }
    }
    expect(dataset.validationBytesPerToken).toBeCloseTo(bytes / count, 12);
  });

  test('unigram entropy of a hand-made stream: bytes a,b,a,b + one EOS → 1.5219 bits', () => {
    const bytes = [Uint8Array.of(97), Uint8Array.of(98), Uint8Array.of(97, 98)];
    const dataset = new TokenDataset(Int32Array.of(0, 1, 2, 3), { seed: 1, validationFraction: 0.5, tokenBytes: (id) => bytes[id], eosId: 3 });
    const expected = -(2 * 0.4 * Math.log2(0.4) + 0.2 * Math.log2(0.2));
    expect(dataset.unigramEntropyBits()).toBeCloseTo(expected, 12);
    expect(expected).toBeCloseTo(1.5219, 4);
    expect(entropyBits([1, 1, 1, 1])).toBeCloseTo(2, 12);
  });
});

describe('cutTextBlocks', () => {
  test('64 blocks that rejoin to the text, cut at line starts, never inside <|endoftext|>', () => {
    const documents = ('ab' + EOS_TOKEN).repeat(1000); // no newlines: cuts land anywhere
    const blocks = cutTextBlocks(documents);
    expect(blocks).toHaveLength(64);
    expect(blocks.join('')).toBe(documents);
    for (const block of blocks) expect(block.split(EOS_TOKEN).every((piece) => /^(ab|a|b)?$/.test(piece))).toBe(true);
    const lines = Array.from({ length: 640 }, (_, i) => `line ${i}`).join('\n');
    const lineBlocks = cutTextBlocks(lines);
    expect(lineBlocks.join('')).toBe(lines);
    expect(lineBlocks.slice(1).every((block) => block.startsWith('line '))).toBe(true);
  });
});

describe('prepareData', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-data-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('tiny recipe: byte tokens over the embedded corpus, contiguous validation, unigram entropy of English', () => {
    const recipe = loadRecipe(path.join(__dirname, '..', '..', 'recipes', 'tiny.yaml'));
    const { tokenizer, dataset, corpusBytes } = prepareData(recipe);
    expect(tokenizer.kind).toBe('byte');
    expect(dataset.tokens.length).toBe(corpusBytes); // one token per byte, no EOS in a single document
    expect(dataset.validationBytesPerToken).toBe(1);
    expect(dataset.validationRuns.length).toBeLessThanOrEqual(3);
    expect(dataset.validationTokenCount / corpusBytes).toBeCloseTo(3 / 64, 2);
    // English text: byte unigram entropy is about 4–4.6 bits.
    const h = dataset.unigramEntropyBits();
    expect(h).toBeGreaterThan(4);
    expect(h).toBeLessThan(4.6);
    const { inputs } = dataset.trainBatch(0, 2, recipe.data.seq_len);
    expect(tokenizer.decode(inputs.subarray(0, 64))).toMatch(/[a-z]+ [a-z]+/);
  });

  test('BPE is trained on the training split only: held-out words are never single tokens', () => {
    const random = new Rng(11);
    const word = () => ' ' + Array.from({ length: 6 }, () => String.fromCharCode(97 + random.int(26))).join('');
    const lineWords = Array.from({ length: 64 }, word);
    // Each line is one split block (equal-length lines, so the cuts land on line starts).
    const text = lineWords.map((w) => w.repeat(40) + '\n').join('');
    expect(cutTextBlocks(text)).toEqual(lineWords.map((w) => w.repeat(40) + '\n'));
    fs.writeFileSync(path.join(dir, 'words.txt'), text);
    fs.writeFileSync(
      path.join(dir, 'r.yaml'),
      'seed: 7\nmodel: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_experts: 2, moe_intermediate_size: 16}\n' +
        'data: {corpus: words.txt, seq_len: 8, validation_fraction: 0.1}\ntokenizer: {type: bpe, vocab_size: 2000}\n' +
        'train: {batch_size: 2, lr: 1e-3, max_steps: 10, eval_tokens: 8}\n',
    );
    const recipe = loadRecipe(path.join(dir, 'r.yaml'));
    const { tokenizer, dataset } = prepareData(recipe);
    const validation = validationBlockMask(7, 0.1);
    expect(validation.filter(Boolean)).toHaveLength(6);
    lineWords.forEach((w, i) => {
      const pieces = tokenizer.encode(w).length;
      if (validation[i]) expect(pieces).toBeGreaterThan(1);
      else expect(pieces).toBe(1);
    });
    expect(tokenizer.decode(dataset.tokens)).toBe(text);
  });
});
