import type { CommandModule } from 'yargs';
import { UserError } from '../errors';

// Placeholder until the owning stage lands; replaced by the real command module.
export const evalCommand: CommandModule = {
  command: 'eval',
  describe: '(being built)',
  handler: () => {
    throw new UserError('the eval command is not available yet');
  },
};
