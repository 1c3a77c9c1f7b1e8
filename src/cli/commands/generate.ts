import type { CommandModule } from 'yargs';
import { UserError } from '../errors';

// Placeholder until the owning stage lands; replaced by the real command module.
export const generateCommand: CommandModule = {
  command: 'generate',
  describe: '(being built)',
  handler: () => {
    throw new UserError('the generate command is not available yet');
  },
};
