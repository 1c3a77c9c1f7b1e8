import type { CommandModule } from 'yargs';
import { UserError } from '../errors';

// Placeholder until the owning stage lands; replaced by the real command module.
export const tokenizeCommand: CommandModule = {
  command: 'tokenize',
  describe: '(being built)',
  handler: () => {
    throw new UserError('the tokenize command is not available yet');
  },
};
