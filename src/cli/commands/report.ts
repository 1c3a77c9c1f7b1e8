import type { CommandModule } from 'yargs';
import { UserError } from '../errors';

// Placeholder until the owning stage lands; replaced by the real command module.
export const reportCommand: CommandModule = {
  command: 'report',
  describe: '(being built)',
  handler: () => {
    throw new UserError('the report command is not available yet');
  },
};
