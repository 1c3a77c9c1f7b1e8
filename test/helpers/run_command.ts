import yargs, { type CommandModule } from 'yargs';

/** Runs one CLI command through yargs as `dsmoe` would, returning what it wrote to stdout (stderr is silenced). */
export async function runCommand(command: CommandModule<object, never>, argv: string[]): Promise<string> {
  let stdout = '';
  const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  const log = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    await yargs(argv).command(command).strict().fail((message, error) => {
      throw error ?? new Error(message);
    }).parseAsync();
  } finally {
    write.mockRestore();
    log.mockRestore();
  }
  return stdout;
}
