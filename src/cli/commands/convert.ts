import type { CommandModule } from 'yargs';
import { UserError } from '../errors';

// Placeholder until the owning stage lands; replaced by the real command module.
export const convertCommand: CommandModule = {
  command: 'convert',
  describe: '(being built)',
  handler: () => {
    throw new UserError('the convert command is not available yet');
  },
};
