/**
 * The bodies `dsmoe serve` answers with, in OpenAI's shapes: one object per endpoint that turns a request's
 * choices (their text pieces, log-probabilities and results) into stream chunks and into the one non-stream answer.
 * The server (completion_server.ts) decides when to send what; this file only decides how it looks.
 */
import type { ServeTokenizer } from './batch_evaluator';
import { continuationText } from './completion_text';
import type { GenerationResult } from './generation';
import { chatLogprobs, completionLogprobs, type TokenLogprob } from './token_logprobs';

export interface ResponseShape {
  /** `object` of the non-stream answer and of stream chunks. */
  readonly object: string;
  readonly chunkObject: string;
  /** The chunk opening choice `index` of a stream, or null if this endpoint sends none. */
  opening(index: number): object | null;
  /** A stream chunk's choice for a piece of text, or null when there is nothing to send. */
  piece(index: number, delta: string, logprobs: TokenLogprob[]): object | null;
  /** The last chunk's choice of `index`: no new text, the finish reason. */
  closing(index: number, result: GenerationResult): object;
  /** One choice of the non-stream answer. */
  whole(index: number, result: GenerationResult): object;
}

/** What a completions choice adds before the generated text under `echo`: its prompt and the prompt's scores. */
export interface EchoedPrompt {
  text: string;
  tokens: number[];
  /** tokens[0] is a BOS the server put before the text: a prompt token, but no part of `text`. */
  addedBos?: boolean;
}

/**
 * `/v1/completions`: choices `{ text, index, logprobs, finish_reason }` with the legacy logprobs arrays. Under
 * `echo` the prompt comes first: in the non-stream text, and as the first chunk of a stream.
 */
export class CompletionShape implements ResponseShape {
  readonly object = 'text_completion';
  readonly chunkObject = 'text_completion';
  /** Per choice: characters already returned (where the next piece starts) and the generated ids reported so far. */
  private readonly offsets = new Map<number, number>();
  private readonly reported = new Map<number, number[]>();

  constructor(
    private readonly tokenizer: ServeTokenizer,
    /** The echoed prompt of each choice, or null without echo. */
    private readonly echoOf: ((index: number) => EchoedPrompt) | null,
    private readonly logprobs: boolean,
  ) {}

  /** Generated tokens are text after the prompt (CompletionText's decoding), so their offsets are counted in it. */
  private readonly generatedText = (ids: number[]) => continuationText(this.tokenizer, ids);

  opening(index: number): object | null {
    if (!this.echoOf) return null;
    const prompt = this.echoOf(index);
    this.offsets.set(index, prompt.text.length);
    return this.choice(index, prompt.text, this.logprobs ? this.promptLogprobs(prompt, []) : null, null);
  }

  piece(index: number, delta: string, logprobs: TokenLogprob[]): object | null {
    if (!delta && !logprobs.length) return null;
    const offset = this.offsets.get(index) ?? 0;
    this.offsets.set(index, offset + delta.length);
    if (!this.logprobs) return this.choice(index, delta, null, null);
    const before = this.reported.get(index) ?? [];
    const scored = completionLogprobs(this.tokenizer, logprobs, offset, before, this.generatedText);
    this.reported.set(index, [...before, ...logprobs.map((entry) => entry.id)]);
    return this.choice(index, delta, scored, null);
  }

  closing(index: number, result: GenerationResult): object {
    return this.choice(index, '', null, result.finishReason);
  }

  whole(index: number, result: GenerationResult): object {
    const prompt = this.echoOf ? this.echoOf(index) : null;
    const text = (prompt?.text ?? '') + result.text;
    let logprobs = null;
    if (this.logprobs) {
      const generated = completionLogprobs(this.tokenizer, result.logprobs, prompt?.text.length ?? 0, [], this.generatedText);
      if (prompt) {
        const scored = this.promptLogprobs(prompt, result.promptLogprobs);
        for (const key of Object.keys(generated) as (keyof typeof generated)[]) (scored[key] as unknown[]).push(...generated[key]);
        logprobs = scored;
      } else logprobs = generated;
    }
    return this.choice(index, text, logprobs, result.finishReason);
  }

  /** The prompt's entries: the first token has no score (nothing predicts it), the rest theirs. */
  private promptLogprobs(prompt: EchoedPrompt, scores: TokenLogprob[]) {
    const entries = prompt.tokens.map((id, position) => (position === 0 ? { id, logprob: null } : scores[position - 1] ?? { id, logprob: null }));
    if (!prompt.addedBos) return completionLogprobs(this.tokenizer, entries, 0);
    // An added BOS is listed (as vLLM lists it) at offset 0 with no width, so the text's offsets index the echoed text.
    const scored = completionLogprobs(this.tokenizer, entries.slice(0, 1), 0);
    const text = completionLogprobs(this.tokenizer, entries.slice(1), 0);
    for (const key of Object.keys(text) as (keyof typeof text)[]) (scored[key] as unknown[]).push(...text[key]);
    return scored;
  }

  private choice(index: number, text: string, logprobs: object | null, finishReason: string | null): object {
    return { text, index, logprobs, finish_reason: finishReason };
  }
}

/**
 * `/v1/chat/completions`: choices `{ index, message | delta, logprobs: { content } | null, finish_reason }`. A stream
 * opens each choice with `delta: { role: 'assistant', content: '' }` and closes it with an empty delta, as OpenAI's.
 */
export class ChatShape implements ResponseShape {
  readonly object = 'chat.completion';
  readonly chunkObject = 'chat.completion.chunk';

  constructor(
    private readonly tokenizer: ServeTokenizer,
    private readonly logprobs: boolean,
  ) {}

  opening(index: number): object {
    return { index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null };
  }

  piece(index: number, delta: string, logprobs: TokenLogprob[]): object | null {
    if (!delta && !logprobs.length) return null;
    return { index, delta: { content: delta }, logprobs: this.logprobs ? { content: chatLogprobs(this.tokenizer, logprobs) } : null, finish_reason: null };
  }

  closing(index: number, result: GenerationResult): object {
    return { index, delta: {}, logprobs: null, finish_reason: result.finishReason };
  }

  whole(index: number, result: GenerationResult): object {
    return {
      index,
      message: { role: 'assistant', content: result.text },
      logprobs: this.logprobs ? { content: chatLogprobs(this.tokenizer, result.logprobs) } : null,
      finish_reason: result.finishReason,
    };
  }
}

/** The prompt text a completions choice echoes: the text as sent, or the decoded ids of a token prompt. */
export function echoText(tokenizer: ServeTokenizer, prompt: { text: string } | { tokens: number[] }): string {
  return 'text' in prompt ? prompt.text : tokenizer.decode(prompt.tokens);
}
