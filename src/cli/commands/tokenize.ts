import * as fs from 'fs';
import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { loadAnyTokenizer } from '../../interop/hf_tokenizer';

interface TokenizeArgs {
  model: string;
  file: string;
  json: boolean;
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

/** `dsmoe tokenize <model-dir> <FILE>`: the token ids of a text under the model's own tokenizer. */
export const tokenizeCommand: CommandModule<object, TokenizeArgs> = {
  command: 'tokenize <model> <file>',
  describe: "Print the token ids of a text file under a model's tokenizer (dense or sparse folder)",
  builder: (yargs) =>
    yargs
      .positional('model', { type: 'string', demandOption: true, describe: 'model folder holding tokenizer.json' })
      .positional('file', { type: 'string', demandOption: true, describe: 'UTF-8 text file to tokenize ("-" reads standard input)' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object {"ids": [...], "count": n} and nothing else' }),
  handler: (args) => {
    if (!fs.existsSync(args.model) || !fs.statSync(args.model).isDirectory()) {
      throw new UserError(`${args.model}: not a model folder`);
    }
    const tokenizer = loadAnyTokenizer(args.model); // dsmoe's own or an imported model's
    const ids = tokenizer.encode(readText(args.file));
    if (args.json) process.stdout.write(JSON.stringify({ ids, count: ids.length }) + '\n');
    else process.stdout.write(ids.join(' ') + '\n');
  },
};
