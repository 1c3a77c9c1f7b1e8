import { SingleBar, Presets } from 'cli-progress';

/**
 * The report's progress bar, on stderr so that stdout stays clean for scripts. Without a terminal (CI logs) it
 * prints nothing; the stage names still go out as plain lines through `note`.
 */
export class ReportProgress {
  private readonly bar: SingleBar | null;
  private readonly quiet: boolean;
  private done = 0;

  /** enabled: true = bar, false = silent, undefined = a bar on a terminal, plain stage lines otherwise. */
  constructor(total: number, enabled?: boolean) {
    this.quiet = enabled === false;
    this.bar = (enabled ?? process.stderr.isTTY === true)
      ? new SingleBar(
          { stream: process.stderr, format: 'report [{bar}] {percentage}% | {value}/{total} | {stage}', hideCursor: true, clearOnComplete: false },
          Presets.shades_classic,
        )
      : null;
    this.bar?.start(total, 0, { stage: 'starting' });
  }

  step(stage: string): void {
    this.done += 1;
    this.bar?.update(this.done, { stage });
  }

  /** A stage heading: shown on the bar, or as a line on stderr when there is no bar. */
  note(stage: string): void {
    if (this.bar) this.bar.update(this.done, { stage });
    else if (!this.quiet) process.stderr.write(`report: ${stage}\n`);
  }


  stop(): void {
    this.bar?.stop();
  }
}
