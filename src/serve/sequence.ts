import type { RequestSampler, ServeModel } from './batch_evaluator';
import { CompletionText } from './completion_text';
import type { FinishReason, GenerationListener, GenerationParams } from './generation';
import { tokenLogprob, type TokenLogprob } from './token_logprobs';

/** A request's state inside the scheduler: its slot, its tokens, how many of them the KV cache holds. */
export class Sequence {
  slot = -1;
  /** Prompt then generated tokens. */
  readonly tokens: number[];
  /** Tokens already evaluated into the slot's KV cache; the rest are fed next. */
  fed = 0;
  generated = 0;
  finished = false;
  cancelled = false;
  private readonly sampler: RequestSampler;
  private readonly text: CompletionText;
  private readonly logprobs: TokenLogprob[] = [];
  private readonly promptLogprobs: TokenLogprob[] = [];
  /** Log-probabilities not yet handed out with a piece of text. */
  private pendingLogprobs: TokenLogprob[] = [];

  constructor(
    readonly params: GenerationParams,
    private readonly listener: GenerationListener,
    private readonly model: ServeModel,
  ) {
    this.tokens = [...params.promptTokens];
    this.sampler = model.createSampler({ temperature: params.temperature, topP: params.topP, seed: params.seed });
    this.text = new CompletionText(model.tokenizer, params.stop);
  }

  /** Still holds a slot that the scheduler must feed or free. */
  get live(): boolean {
    return !this.finished && !this.cancelled;
  }

  get prefilling(): boolean {
    return this.fed < this.tokens.length - 1;
  }

  /** Whether the scheduler must return logits for the prompt positions before the last (to score the prompt). */
  get wantsPromptLogits(): boolean {
    return this.params.promptLogprobs;
  }

  /** The logits row [V] at prompt position `position` (< prompt length − 1): scores the prompt token after it. */
  acceptPromptLogits(position: number, row: Float32Array): void {
    this.promptLogprobs[position] = tokenLogprob(row, this.tokens[position + 1], this.params.logprobs ?? 0, this.model.tokenizer.vocabSize);
  }

  /** Consumes the logits row [V] predicting the token after `tokens`: samples, emits text, maybe finishes. */
  acceptLogits(row: Float32Array): void {
    if (this.params.maxTokens === 0) {
      this.finish('length');
      return;
    }
    const token = this.sampler.sample(row);
    this.generated++;
    if (token === this.model.tokenizer.eosId) {
      this.finish('stop');
      return;
    }
    this.tokens.push(token);
    if (this.params.logprobs !== null) {
      const entry = tokenLogprob(row, token, this.params.logprobs, this.model.tokenizer.vocabSize);
      this.logprobs.push(entry);
      this.pendingLogprobs.push(entry);
    }
    const { delta, stopped } = this.text.push(token);
    if (delta) this.emit(delta);
    if (stopped) this.finish('stop');
    else if (this.generated >= this.params.maxTokens || this.tokens.length >= this.model.maxContext) this.finish('length');
  }

  fail(error: Error): void {
    if (!this.live) return;
    this.finished = true;
    this.listener.onError(error);
  }

  private emit(delta: string): void {
    const logprobs = this.pendingLogprobs;
    this.pendingLogprobs = [];
    this.listener.onText(delta, logprobs);
  }

  private finish(reason: FinishReason): void {
    const { delta, stopped } = this.text.finish();
    if (delta || this.pendingLogprobs.length) this.emit(delta);
    this.finished = true;
    this.listener.onFinish({
      text: this.text.fullText,
      finishReason: stopped ? 'stop' : reason,
      promptTokens: this.params.promptTokens.length,
      completionTokens: this.generated,
      logprobs: this.logprobs,
      promptLogprobs: this.promptLogprobs,
    });
  }
}
