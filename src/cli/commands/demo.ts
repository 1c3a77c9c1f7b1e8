import type { CommandModule } from 'yargs';
import { UserError } from '../errors';

// Placeholder until the owning stage lands; replaced by the real command module.
export const demoCommand: CommandModule = {
  command: 'demo',
  describe: '(being built)',
  handler: () => {
    throw new UserError('the demo command is not available yet');
  },
};
