import type { CommandModule } from 'yargs';
import { UserError } from '../errors';

// Placeholder until the owning stage lands; replaced by the real command module.
export const trainCommand: CommandModule = {
  command: 'train',
  describe: '(being built)',
  handler: () => {
    throw new UserError('the train command is not available yet');
  },
};
