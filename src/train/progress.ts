import * as cliProgress from 'cli-progress';

/**
 * Training progress on stderr: a live bar (loss, tokens/s, ETA) on a terminal, plain lines otherwise (CI logs,
 * pipes), so stdout stays free for results.
 */
export class TrainingProgress {
  private readonly bar: cliProgress.SingleBar | null;
  private lastPlain = 0;

  constructor(
    private readonly total: number,
    start: number,
    private readonly plainEvery: number,
    enabled = true,
  ) {
    if (enabled && process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: 'train |{bar}| {value}/{total} steps | loss {loss} | {tps} tok/s | ETA {eta_formatted}',
          hideCursor: true,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, start, { loss: '-', tps: '-' });
    } else {
      this.bar = null;
    }
    this.enabled = enabled;
  }

  private readonly enabled: boolean;

  update(step: number, loss: number, tokensPerSecond: number, etaSeconds: number): void {
    if (!this.enabled) return;
    if (this.bar) {
      this.bar.update(step, { loss: loss.toFixed(4), tps: Math.round(tokensPerSecond) });
    } else if (step - this.lastPlain >= this.plainEvery || step === this.total) {
      this.lastPlain = step;
      process.stderr.write(
        `step ${step}/${this.total}  loss ${loss.toFixed(4)}  ${Math.round(tokensPerSecond)} tok/s  ETA ${formatDuration(etaSeconds)}\n`,
      );
    }
  }

  /** Prints a message without breaking the bar. */
  note(message: string): void {
    if (!this.enabled) return;
    if (this.bar) {
      this.bar.stop();
      process.stderr.write(message + '\n');
      this.bar.start(this.total, (this.bar as unknown as { value: number }).value, {});
    } else {
      process.stderr.write(message + '\n');
    }
  }

  stop(): void {
    this.bar?.stop();
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
