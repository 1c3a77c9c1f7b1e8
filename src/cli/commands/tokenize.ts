import * as fs from 'fs';
import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { encodePrompt } from '../../data/tokenizer';
import { loadAnyTokenizer } from '../../interop/hf_tokenizer';

interface TokenizeArgs {
  model: string;
  file: string;
  json: boolean;
  bos: boolean;
}

/**
 * The FILE argument, with standard input as "-". yargs re-parses positionals as `--file -`, where a lone "-" reads as a
 * flag with no value, so "-" arrives as ""; an empty string is no file name, so it can only have been "-".
 */
function fileArgument(file: string): string {
  return file === '' ? '-' : file;
}

/** Reads a text file strictly as UTF-8 ("-" = standard input), so that a wrong encoding is reported, not guessed. */
function readText(file: string): string {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file === '-' ? 0 : file);
  } catch (error) {
    throw new UserError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`${file}: not valid UTF-8`);
  }
}

/**
 * `dsmoe tokenize <model-dir> <FILE>`: the token ids of a text under the model's own tokenizer, as a prompt reads
 * (transformers' `tokenizer(text)`: with the BOS of tokenizers that add one), or the text alone with --no-bos.
 */
export const tokenizeCommand: CommandModule<object, TokenizeArgs> = {
  command: 'tokenize <model> <file>',
  describe: "Print the token ids of a text file under a model's tokenizer (dense or sparse folder)",
  builder: (yargs) =>
    yargs
      .positional('model', { type: 'string', demandOption: true, describe: 'model folder holding tokenizer.json' })
      .positional('file', { type: 'string', demandOption: true, describe: 'UTF-8 text file to tokenize ("-" reads standard input)' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object {"ids": [...], "count": n} and nothing else' })
      .option('bos', {
        type: 'boolean',
        default: true,
        describe: "put the tokenizer's BOS first, as prompts get it (imported Llama/Mistral tokenizers; dsmoe's own add none); --no-bos: the text's ids alone",
      }),
  handler: (args) => {
    if (!fs.existsSync(args.model) || !fs.statSync(args.model).isDirectory()) {
      throw new UserError(`${args.model}: not a model folder`);
    }
    const tokenizer = loadAnyTokenizer(args.model); // dsmoe's own or an imported model's
    const text = readText(fileArgument(args.file));
    const ids = args.bos ? encodePrompt(tokenizer, text) : tokenizer.encode(text);
    if (args.json) process.stdout.write(JSON.stringify({ ids, count: ids.length }) + '\n');
    else process.stdout.write(ids.join(' ') + '\n');
  },
};
