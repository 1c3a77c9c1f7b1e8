import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import yargs from 'yargs';

/** Standard input as the command reads it (fs.readFileSync(0)); every other read is the real one. */
const mockStdin = { bytes: Buffer.alloc(0), reads: 0 };
jest.mock('fs', () => {
  const real = jest.requireActual('fs');
  return {
    ...real,
    readFileSync: (file: unknown, options?: unknown) => (file === 0 ? (mockStdin.reads++, mockStdin.bytes) : real.readFileSync(file, options)),
  };
});
import { tokenizeCommand } from '../../../src/cli/commands/tokenize';
import { buildTokenizer } from '../../../src/data/tokenizer';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-tokcmd-'));
  buildTokenizer({ type: 'byte', vocab_size: 257 }, '').save(path.join(dir, 'model'));
  fs.writeFileSync(path.join(dir, 'text.txt'), 'Hi é<|endoftext|>!');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs the command's handler and returns what it wrote to stdout. */
async function run(partial: { model: string; file: string; json: boolean; bos?: boolean }): Promise<string> {
  const args = { bos: true, ...partial };
  const written: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  });
  try {
    await tokenizeCommand.handler({ ...args, _: [], $0: 'dsmoe' });
  } finally {
    spy.mockRestore();
  }
  return written.join('');
}

test('--json prints exactly one JSON object with ids and count', async () => {
  const out = await run({ model: path.join(dir, 'model'), file: path.join(dir, 'text.txt'), json: true });
  expect(out.endsWith('\n')).toBe(true);
  expect(JSON.parse(out)).toEqual({ ids: [72, 105, 32, 0xc3, 0xa9, 256, 33], count: 7 });
});

test('plain output is the ids separated by spaces', async () => {
  const out = await run({ model: path.join(dir, 'model'), file: path.join(dir, 'text.txt'), json: false });
  expect(out).toBe('72 105 32 195 169 256 33\n');
});

test('errors name the missing folder, tokenizer or file', async () => {
  await expect(run({ model: path.join(dir, 'absent'), file: path.join(dir, 'text.txt'), json: false })).rejects.toThrow(/absent: not a model folder/);
  await expect(run({ model: dir, file: path.join(dir, 'text.txt'), json: false })).rejects.toThrow(/tokenizer\.json: cannot read \(ENOENT\)/);
  await expect(run({ model: path.join(dir, 'model'), file: path.join(dir, 'none.txt'), json: false })).rejects.toThrow(/none\.txt: cannot read \(ENOENT\)/);
  fs.writeFileSync(path.join(dir, 'latin1.txt'), Buffer.from([0x63, 0x61, 0x66, 0xe9]));
  await expect(run({ model: path.join(dir, 'model'), file: path.join(dir, 'latin1.txt'), json: false })).rejects.toThrow(/latin1\.txt: not valid UTF-8/);
});

test("an imported model's SentencePiece-style tokenizer gives sentencepiece's ids", async () => {
  const fixtures = path.join(__dirname, '..', '..', 'fixtures', 'tokenizers');
  const reference = JSON.parse(fs.readFileSync(path.join(fixtures, 'reference.json'), 'utf8'));
  const row = reference.llama_bpe_legacy.find((r: { text: string }) => r.text.includes('😀'));
  fs.writeFileSync(path.join(dir, 'emoji.txt'), row.text);
  const model = path.join(fixtures, 'llama_bpe_legacy');
  // as a prompt reads it (transformers' tokenizer(text)): <s> first; --no-bos: the text's ids alone
  expect(JSON.parse(await run({ model, file: path.join(dir, 'emoji.txt'), json: true })).ids).toEqual([1, ...row.ids]);
  expect(JSON.parse(await run({ model, file: path.join(dir, 'emoji.txt'), json: true, bos: false })).ids).toEqual(row.ids);
});

test('"-" reads standard input through the command line parser (yargs hands the handler "" for it)', async () => {
  mockStdin.bytes = Buffer.from('Hi é<|endoftext|>!');
  const written: string[] = [];
  const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  });
  try {
    await yargs(['tokenize', path.join(dir, 'model'), '-']).command(tokenizeCommand).strict().parseAsync();
  } finally {
    write.mockRestore();
  }
  expect(mockStdin.reads).toBe(1);
  expect(written.join('')).toBe('72 105 32 195 169 256 33\n');
});
