import type { CommandModule } from 'yargs';
import { UserError } from '../errors';

// Placeholder until the owning stage lands; replaced by the real command module.
export const sampleCommand: CommandModule = {
  command: 'sample',
  describe: '(being built)',
  handler: () => {
    throw new UserError('the sample command is not available yet');
  },
};
