import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EOS_TOKEN } from '../../src/data/byte_level';
import { loadCorpusText, packageRoot } from '../../src/data/corpus';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-corpus-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const spec = (...files: string[]) => ({ corpus: files.map((f) => path.join(dir, f)), text_field: 'text' });

test('the embedded corpus is the KJV, at least 1 MB of UTF-8 text', () => {
  expect(fs.existsSync(path.join(packageRoot(), 'package.json'))).toBe(true);
  const text = loadCorpusText({ corpus: 'default', text_field: 'text' });
  expect(Buffer.byteLength(text)).toBeGreaterThan(1_000_000);
  expect(text.startsWith('In the beginning God created the heaven and the earth.')).toBe(true);
  expect(text).toContain('Jesus wept.');
});

test('.txt and .jsonl files are read and joined with <|endoftext|>', () => {
  fs.writeFileSync(path.join(dir, 'a.txt'), 'first file\nwith two lines ✓');
  fs.writeFileSync(path.join(dir, 'b.jsonl'), '{"text": "doc one"}\n\n{"text": "doc two", "id": 2}\n');
  expect(loadCorpusText(spec('a.txt', 'b.jsonl'))).toBe(['first file\nwith two lines ✓', 'doc one', 'doc two'].join(EOS_TOKEN));
  fs.writeFileSync(path.join(dir, 'c.jsonl'), '{"body": "x"}\n');
  expect(loadCorpusText({ corpus: [path.join(dir, 'c.jsonl')], text_field: 'body' })).toBe('x');
});

describe('errors name the file (and line)', () => {
  test('invalid UTF-8', () => {
    fs.writeFileSync(path.join(dir, 'bad.txt'), Buffer.from([0x61, 0x0a, 0x62, 0xc3, 0x28]));
    expect(() => loadCorpusText(spec('bad.txt'))).toThrow(/bad\.txt: not valid UTF-8 \(first bad byte on line 2\)/);
  });
  test('missing file', () => {
    expect(() => loadCorpusText(spec('nope.txt'))).toThrow(/nope\.txt: cannot read the corpus file \(ENOENT\)/);
  });
  test('a .jsonl line that is not JSON', () => {
    fs.writeFileSync(path.join(dir, 'broken.jsonl'), '{"text": "ok"}\n{"text": \n');
    expect(() => loadCorpusText(spec('broken.jsonl'))).toThrow(/broken\.jsonl:2: invalid JSON/);
  });
  test('a .jsonl line without the text field', () => {
    fs.writeFileSync(path.join(dir, 'field.jsonl'), '{"text": "ok"}\n{"content": "x"}\n');
    expect(() => loadCorpusText(spec('field.jsonl'))).toThrow(/field\.jsonl:2: expected an object with a string field "text"/);
  });
});
