import type { ServeTokenizer } from './batch_evaluator';

/** Longest run of tokens held back while their bytes decode to an incomplete UTF-8 character. */
const MAX_HELD_TOKENS = 4;

/**
 * The text generated tokens add after a prompt: their bytes joined (tokenizer.tokenBytes), decoded as UTF-8. For
 * byte-level BPE this is `decode`; for SentencePiece-style tokenizers `decode` drops the space of a leading "▁" (the
 * start-of-text rule), which a continuation must keep, as vLLM's incremental detokenizer does.
 */
export function continuationText(tokenizer: ServeTokenizer, ids: number[]): string {
  return Buffer.concat(ids.map((id) => tokenizer.tokenBytes(id))).toString('utf8');
}

/**
 * Turns one request's generated tokens into text as they arrive: decodes incrementally (holding back a token that
 * ends mid-character), cuts at the first stop string, and hands out only text that can no longer become part of a
 * stop string. Streamed and non-streamed requests both go through it, so their texts are identical.
 */
export class CompletionText {
  /** Decoded text, cut at a stop string once one is found. */
  private text = '';
  private emitted = 0;
  private held: number[] = [];
  private readonly longestStop: number;

  constructor(
    private readonly tokenizer: ServeTokenizer,
    private readonly stop: string[],
  ) {
    this.longestStop = stop.reduce((m, s) => Math.max(m, s.length), 0);
  }

  get fullText(): string {
    return this.text;
  }

  /** Adds one generated token; `stopped` once a stop string has appeared (it and what follows are dropped). */
  push(token: number): { delta: string; stopped: boolean } {
    this.held.push(token);
    const decoded = continuationText(this.tokenizer, this.held);
    if (decoded.endsWith('\uFFFD') && this.held.length < MAX_HELD_TOKENS) return { delta: '', stopped: false };
    this.held = [];
    return this.append(decoded, false);
  }

  /** Flushes held tokens at the end of generation and returns the rest of the text. */
  finish(): { delta: string; stopped: boolean } {
    const decoded = this.held.length ? continuationText(this.tokenizer, this.held) : '';
    this.held = [];
    return this.append(decoded, true);
  }

  private append(decoded: string, final: boolean): { delta: string; stopped: boolean } {
    const searchFrom = Math.max(0, this.text.length - this.longestStop + 1);
    this.text += decoded;
    const cut = this.firstStop(searchFrom);
    if (cut >= 0) {
      this.text = this.text.slice(0, cut);
      return { delta: this.take(this.text.length), stopped: true };
    }
    return { delta: this.take(final ? this.text.length : this.text.length - this.stopPrefixAtEnd()), stopped: false };
  }

  private take(end: number): string {
    if (end <= this.emitted) return '';
    const delta = this.text.slice(this.emitted, end);
    this.emitted = end;
    return delta;
  }

  private firstStop(from: number): number {
    let first = -1;
    for (const s of this.stop) {
      const at = this.text.indexOf(s, from);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    return first;
  }

  /** Length of the longest end of the text that is the start of some stop string (it may yet complete). */
  private stopPrefixAtEnd(): number {
    let longest = 0;
    for (const s of this.stop) {
      for (let n = Math.min(s.length - 1, this.text.length); n > longest; n--) {
        if (this.text.endsWith(s.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
