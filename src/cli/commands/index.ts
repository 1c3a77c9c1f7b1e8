import type { CommandModule } from 'yargs';
import { trainCommand } from './train';
import { prepareCommand } from './prepare';
import { evalCommand } from './eval';
import { tokenizeCommand } from './tokenize';
import { sampleCommand } from './sample';
import { convertCommand } from './convert';
import { generateCommand } from './generate';
import { reportCommand } from './report';
import { demoCommand } from './demo';
import { serveCommand } from './serve';
import { exportCommand } from './export';
import { studyCommand } from './study';

/** Every `dsmoe` command, in the order `--help` lists them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [
  prepareCommand,
  trainCommand,
  evalCommand,
  tokenizeCommand,
  sampleCommand,
  convertCommand,
  generateCommand,
  reportCommand,
  demoCommand,
  serveCommand,
  exportCommand,
  studyCommand,
];
