/**
 * The training text: the embedded King James Bible (src/data/corpus/kjv.txt.gz, public domain, from Debian's
 * bible-kjv; see scripts/make-corpus.sh), or the user's UTF-8 `.txt` files / `.jsonl` files with a text field.
 * Documents are joined with <|endoftext|>, which the tokenizer turns into its EOS id.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { UserError } from '../errors';
import { EOS_TOKEN } from './byte_level';

export interface CorpusSpec {
  corpus: 'default' | string[];
  text_field: string;
}

/** The folder holding package.json, found by walking up from this file (works from src/ and from dist/src/). */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = parent;
  }
}

export function defaultCorpusPath(): string {
  return path.join(packageRoot(), 'src', 'data', 'corpus', 'kjv.txt.gz');
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(bytes: Uint8Array, where: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    // Report where the first invalid sequence is, so the user can find it.
    const text = Buffer.from(bytes).toString('utf8');
    const bad = text.indexOf('\ufffd');
    const line = bad >= 0 ? text.slice(0, bad).split('\n').length : undefined;
    throw new UserError(`${where}: not valid UTF-8${line ? ` (first bad byte on line ${line})` : ''}`);
  }
}

function readBytes(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new UserError(`${file}: cannot read the corpus file (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/** One document per non-empty line: `{ "<textField>": "..." }`. */
function readJsonl(file: string, textField: string): string[] {
  const lines = decodeUtf8(readBytes(file), file).split('\n');
  const documents: string[] = [];
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    const where = `${file}:${index + 1}`;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (error) {
      throw new UserError(`${where}: invalid JSON (${(error as Error).message})`);
    }
    const text = record !== null && typeof record === 'object' ? (record as Record<string, unknown>)[textField] : undefined;
    if (typeof text !== 'string') {
      throw new UserError(`${where}: expected an object with a string field "${textField}", got ${line.slice(0, 60)}`);
    }
    documents.push(text);
  });
  if (documents.length === 0) throw new UserError(`${file}: no documents (every line is empty)`);
  return documents;
}

/** The whole corpus as one string, documents separated by <|endoftext|>. */
export function loadCorpusText(spec: CorpusSpec): string {
  if (spec.corpus === 'default') {
    const file = defaultCorpusPath();
    return decodeUtf8(zlib.gunzipSync(readBytes(file)), file);
  }
  const documents: string[] = [];
  for (const file of spec.corpus) {
    if (file.toLowerCase().endsWith('.jsonl')) documents.push(...readJsonl(file, spec.text_field));
    else if (file.toLowerCase().endsWith('.txt')) documents.push(decodeUtf8(readBytes(file), file));
    else throw new UserError(`${file}: expected a .txt or .jsonl corpus file`);
  }
  const text = documents.join(EOS_TOKEN);
  if (text.length === 0) throw new UserError(`corpus ${spec.corpus.join(', ')}: no text`);
  return text;
}
