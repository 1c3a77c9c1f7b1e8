import yargs from 'yargs';
import { commands } from './commands';
import { UserError, oneLine } from '../errors';

/** Entry point of the `dsmoe` binary. */
export async function main(argv: string[]): Promise<void> {
  const parser = yargs(argv)
    .scriptName('dsmoe')
    .usage('$0 <command> [options]\n\nDense-trained, sparse-served Mixture-of-Experts models.')
    .strict()
    .demandCommand(1, 'Name a command; `dsmoe --help` lists them.')
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((message, error) => {
      if (error) throw error;
      process.stderr.write(`dsmoe: ${message}\n`);
      process.exit(2);
    });
  for (const command of commands) parser.command(command);
  try {
    await parser.parseAsync();
  } catch (error) {
    const command = argv.find((a) => !a.startsWith('-')) ?? '';
    process.stderr.write(`dsmoe${command ? ' ' + command : ''}: ${oneLine(error)}\n`);
    if (!(error instanceof UserError) && process.env.DSMOE_DEBUG) console.error(error);
    process.exit(1);
  }
}
