import { SingleBar, Presets } from 'cli-progress';

/**
 * The report's progress line, on stderr so that stdout stays clean for scripts. Steps carry weights (estimated
 * milliseconds when the report runs to a time budget, 1 each otherwise), so the ETA is the remaining weight at the
 * pace measured so far. On a terminal it is a bar; without one (CI logs) a plain line per stage and, at most every
 * LINE_INTERVAL_MS, a line with the share done and the ETA.
 */

const LINE_INTERVAL_MS = 5000;

/** Milliseconds left when `done` of `total` weight took `elapsedMs`; null before anything is done. */
export function etaMs(elapsedMs: number, done: number, total: number): number | null {
  if (done <= 0 || total <= 0) return null;
  return Math.max(0, (elapsedMs * (total - done)) / done);
}

/** "1h02m", "4m05s", "12s", or "?" when unknown. */
export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '?';
  const seconds = Math.round(ms / 1000);
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

export class ReportProgress {
  private readonly bar: SingleBar | null;
  private readonly quiet: boolean;
  private readonly label: string;
  private total: number;
  private done = 0;
  private readonly started = Date.now();
  private lastLine = 0;

  /** enabled: true = bar, false = silent, undefined = a bar on a terminal, plain lines otherwise. */
  constructor(total: number, enabled?: boolean, label = 'report') {
    this.quiet = enabled === false;
    this.total = total;
    this.label = label;
    this.bar = (enabled ?? process.stderr.isTTY === true)
      ? new SingleBar(
          { stream: process.stderr, format: `${label} [{bar}] {percentage}% | ETA {eta_text} | {stage}`, hideCursor: true, clearOnComplete: false },
          Presets.shades_classic,
        )
      : null;
    this.bar?.start(total, 0, { stage: 'starting', eta_text: '?' });
  }

  /** The work ahead changed (a time budget chose it): `total` is the whole weight, done included. */
  setTotal(total: number): void {
    this.total = Math.max(total, this.done);
    this.bar?.setTotal(this.total);
  }

  /**
   * From now on weights are estimated milliseconds: what is done counts as the time it took, and `remainingMs` of
   * estimated work lies ahead (a time budget has just chosen it).
   */
  weighInMs(remainingMs: number): void {
    this.done = Math.max(1, Date.now() - this.started);
    this.total = this.done + Math.max(0, remainingMs);
    this.bar?.setTotal(this.total);
    this.bar?.update(this.done);
  }

  step(stage: string, weight = 1): void {
    this.done = Math.min(this.total, this.done + weight);
    const eta = formatDuration(etaMs(Date.now() - this.started, this.done, this.total));
    if (this.bar) {
      this.bar.update(this.done, { stage, eta_text: eta });
    } else if (!this.quiet && Date.now() - this.lastLine >= LINE_INTERVAL_MS) {
      this.lastLine = Date.now();
      const percent = this.total > 0 ? Math.round((100 * this.done) / this.total) : 100;
      process.stderr.write(`${this.label}: ${percent}% done, ETA ${eta} (${stage})\n`);
    }
  }

  /** A stage heading: shown on the bar, or as a line on stderr when there is no bar. */
  note(stage: string): void {
    if (this.bar) this.bar.update(this.done, { stage });
    else if (!this.quiet) process.stderr.write(`${this.label}: ${stage}\n`);
  }

  stop(): void {
    this.bar?.stop();
  }
}
