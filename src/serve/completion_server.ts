/**
 * The HTTP front of `dsmoe serve`, on Node's own `http` module rather than a framework: the surface is six routes,
 * server-sent events are a few `res.write` calls, and it adds nothing to install or audit. What a framework would
 * bring (schema validation, routing) is smaller here written out against OpenAI's exact error shapes.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ApiError } from './api_error';
import type { ServeModel } from './batch_evaluator';
import { parseChatRequest } from './chat_request';
import { encodePrompt } from '../data/tokenizer';
import { parseCompletionRequest } from './completion_request';
import type { GenerationHandle, GenerationParams, GenerationResult } from './generation';
import { ChatShape, CompletionShape, echoText, type ResponseShape } from './openai_responses';
import type { SamplingFields } from './request_fields';
import type { TokenLogprob } from './token_logprobs';
import { Scheduler } from './scheduler';
import { ServeMetrics } from './serve_metrics';

export interface ServeOptions {
  /** Sequences decoded together; default: the model's slots. */
  maxBatch?: number;
  /** Requests waiting for a slot before 429; default 256. */
  maxQueue?: number;
  /** Prompt tokens per sequence per step; default 128. */
  prefillChunk?: number;
  /** Tokens per evaluate call; default max(512, maxBatch + prefillChunk). */
  maxBatchTokens?: number;
  /** Largest request body accepted, in bytes; default 1 MiB. */
  maxBodyBytes?: number;
}

export class CompletionServer {
  readonly http: http.Server;
  readonly scheduler: Scheduler;
  readonly metrics = new ServeMetrics();
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly maxBatch: number;
  private readonly maxQueue: number;
  private readonly maxBodyBytes: number;
  private draining: Promise<void> | null = null;
  private openResponses = 0;
  private responsesDone: (() => void) | null = null;

  constructor(
    readonly model: ServeModel,
    options: ServeOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? model.slots;
    this.maxQueue = options.maxQueue ?? 256;
    const prefillChunk = options.prefillChunk ?? 128;
    this.scheduler = new Scheduler(model, {
      maxBatch: this.maxBatch,
      maxQueue: this.maxQueue,
      prefillChunk,
      maxBatchTokens: options.maxBatchTokens ?? Math.max(512, this.maxBatch + prefillChunk),
    });
    this.scheduler.onStep = (report) => this.metrics.countStep(report);
    this.maxBodyBytes = options.maxBodyBytes ?? 1 << 20;
    this.http = http.createServer((req, res) => {
      try {
        this.route(req, res);
      } catch (error) {
        // A handler bug must cost one request, never the process and everyone else's requests.
        this.fail(res, error);
      }
    });
  }

  /** Starts listening; port 0 picks a free one (read it from the result). */
  listen(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve(this.http.address() as AddressInfo);
      });
    });
  }

  /**
   * Graceful stop: refuse new connections and requests (503), let every accepted request finish, then close.
   * Idempotent; the promise settles once the listener and every connection are closed.
   */
  drain(): Promise<void> {
    if (this.draining) return this.draining;
    this.draining = (async () => {
      const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
      this.http.closeIdleConnections();
      await this.scheduler.drain();
      if (this.openResponses > 0) await new Promise<void>((resolve) => (this.responsesDone = resolve));
      this.http.closeAllConnections();
      await closed;
    })();
    return this.draining;
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.openResponses++;
    res.once('close', () => {
      this.openResponses--;
      if (this.openResponses === 0 && this.responsesDone) this.responsesDone();
    });
    if (this.draining) res.setHeader('Connection', 'close');
    const path = (req.url ?? '/').split('?')[0];
    const handlers: Record<string, Record<string, () => void>> = {
      '/v1/completions': { POST: () => this.completions(req, res) },
      '/v1/chat/completions': { POST: () => this.chatCompletions(req, res) },
      '/v1/models': { GET: () => this.send(res, 200, this.modelList()) },
      '/health': { GET: () => this.health(res) },
      '/metrics': { GET: () => this.sendMetrics(res) },
    };
    if (path.startsWith('/v1/models/')) {
      let id: string;
      try {
        id = decodeURIComponent(path.slice('/v1/models/'.length));
      } catch {
        throw new ApiError(400, `malformed model id in ${path}`, 'invalid_request_error', 'model');
      }
      handlers[path] = {
        GET: () =>
          id === this.model.id
            ? this.send(res, 200, this.modelList().data[0])
            : this.fail(res, new ApiError(404, `model '${id}' is not served here`, 'invalid_request_error', 'model', 'model_not_found')),
      };
    }
    const methods = handlers[path];
    if (!methods) return this.fail(res, new ApiError(404, `no route ${req.method} ${path}`, 'invalid_request_error', null, 'not_found'));
    const handler = methods[req.method ?? ''];
    if (!handler) {
      res.setHeader('Allow', Object.keys(methods).join(', '));
      return this.fail(res, new ApiError(405, `${path} accepts ${Object.keys(methods).join(', ')}`, 'invalid_request_error', null, 'method_not_allowed'));
    }
    handler();
  }

  private modelList(): { object: 'list'; data: object[] } {
    return {
      object: 'list',
      data: [{ id: this.model.id, object: 'model', created: this.created, owned_by: 'dsmoe', max_model_len: this.model.maxContext }],
    };
  }

  private health(res: http.ServerResponse): void {
    if (this.draining) return this.send(res, 503, { status: 'draining' });
    this.send(res, 200, { status: 'ok', model: this.model.id, active_sequences: this.scheduler.activeSequences, queue_depth: this.scheduler.queueDepth });
  }

  private sendMetrics(res: http.ServerResponse): void {
    this.metrics.countRequest(200);
    const body = this.metrics.render({
      queueDepth: this.scheduler.queueDepth,
      decodeBatch: this.scheduler.lastDecodeBatch,
      activeSequences: this.scheduler.activeSequences,
      maxBatch: this.maxBatch,
      expertCache: this.model.expertCacheStats?.() ?? null,
    });
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  private completions(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.readRequest(req, (body) => parseCompletionRequest(body, { maxContext: this.model.maxContext }))
      .then((request) => {
        const { tokenizer } = this.model;
        const prompts = request.prompts.map((prompt, i) => {
          // Text is tokenized as vLLM does (add_special_tokens=True: the BOS of tokenizers that add one); ids are taken as sent.
          const tokens = 'text' in prompt ? encodePrompt(tokenizer, prompt.text) : this.checkTokenPrompt(prompt.tokens, request.prompts.length > 1 ? i : null);
          // An empty prompt starts from end-of-text, as GPT-style models are conditioned at document starts.
          return { prompt, tokens: tokens.length ? tokens : [tokenizer.eosId], addedBos: 'text' in prompt && tokenizer.bosId !== undefined };
        });
        const logprobs = request.logprobs;
        const jobs = prompts.flatMap(({ tokens }) =>
          Array.from({ length: request.n }, (_, i) => ({
            ...this.generationParams(request, tokens, request.maxTokens, i),
            logprobs,
            promptLogprobs: request.echo && logprobs !== null,
          })),
        );
        const echoOf = request.echo
          ? (index: number) => {
              const { prompt, tokens, addedBos } = prompts[Math.floor(index / request.n)];
              return { text: echoText(tokenizer, prompt), tokens, addedBos };
            }
          : null;
        this.run(res, jobs, request, new CompletionShape(tokenizer, echoOf, logprobs !== null), 'cmpl');
      })
      .catch((error) => this.fail(res, error));
  }

  private chatCompletions(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.readRequest(req, (body) => parseChatRequest(body, { maxContext: this.model.maxContext }))
      .then((request) => {
        const { tokenizer, maxContext } = this.model;
        const { chatTemplate } = this.model;
        // vLLM tokenizes a rendered chat with add_special_tokens=False: a model's template writes its own BOS.
        const rendered = chatTemplate.render(request.messages);
        const encoded = chatTemplate.addsTokenizerBos ? encodePrompt(tokenizer, rendered) : tokenizer.encode(rendered);
        const tokens = encoded.length ? encoded : [tokenizer.eosId];
        // Without max_tokens a chat answer may run to the end of the context, as OpenAI's and vLLM's do.
        const maxTokens = request.maxTokens ?? Math.max(1, maxContext - tokens.length);
        const logprobs = request.logprobs ? request.topLogprobs : null;
        const jobs = Array.from({ length: request.n }, (_, i) => ({
          ...this.generationParams(request, tokens, maxTokens, i),
          logprobs,
          promptLogprobs: false,
        }));
        this.run(res, jobs, request, new ChatShape(tokenizer, request.logprobs), 'chatcmpl');
      })
      .catch((error) => this.fail(res, error));
  }

  /** Reads and parses a body, refusing it while draining or when it names another model. */
  private async readRequest<T extends { model: string | null }>(req: http.IncomingMessage, parse: (body: string) => T): Promise<T> {
    const body = await this.readBody(req);
    if (this.draining) throw new ApiError(503, 'the server is shutting down', 'service_unavailable_error');
    const request = parse(body);
    if (request.model !== null && request.model !== this.model.id) {
      throw new ApiError(404, `model '${request.model}' is not served here; this server serves '${this.model.id}'`, 'invalid_request_error', 'model', 'model_not_found');
    }
    return request;
  }

  /** Token ids sent as a prompt must be tokens of this model's tokenizer. */
  private checkTokenPrompt(tokens: number[], promptIndex: number | null): number[] {
    const { vocabSize } = this.model.tokenizer;
    const bad = tokens.find((t) => t >= vocabSize);
    if (bad !== undefined) {
      const where = promptIndex === null ? 'the prompt' : `prompt ${promptIndex}`;
      throw new ApiError(400, `${where} holds token id ${bad}; this model's tokens are 0..${vocabSize - 1}`, 'invalid_request_error', 'prompt');
    }
    return tokens;
  }

  /** One choice's generation (without its logprob settings): choice i of a prompt samples with seed + i. */
  private generationParams(request: SamplingFields, promptTokens: number[], maxTokens: number, choice: number) {
    const { maxContext } = this.model;
    if (promptTokens.length >= maxContext) {
      throw new ApiError(400, `the prompt is ${promptTokens.length} tokens; the context holds ${maxContext}`, 'invalid_request_error', 'prompt', 'context_length_exceeded');
    }
    if (promptTokens.length + maxTokens > maxContext) {
      throw new ApiError(400, `prompt (${promptTokens.length} tokens) plus max_tokens (${maxTokens}) exceeds the context of ${maxContext} tokens`, 'invalid_request_error', 'max_tokens', 'context_length_exceeded');
    }
    return { promptTokens, maxTokens, temperature: request.temperature, topP: request.topP, seed: request.seed + choice, stop: request.stop };
  }

  /**
   * Runs a request's choices (all queued together, so they are batched with each other and with other requests)
   * and answers: chunks as text is made when streaming, else one body once every choice has finished. If the client
   * goes away, or one choice fails, every choice is cancelled.
   */
  private run(res: http.ServerResponse, jobs: GenerationParams[], request: SamplingFields, shape: ResponseShape, idPrefix: string): void {
    const holds = this.maxBatch + this.maxQueue;
    if (jobs.length > holds) {
      throw new ApiError(400, `prompts × n = ${jobs.length} choices; this server holds at most ${holds} at once`, 'invalid_request_error', 'n');
    }
    const arrived = performance.now();
    const base = { id: `${idPrefix}-${randomUUID().replace(/-/g, '')}`, object: shape.chunkObject, created: Math.floor(Date.now() / 1000), model: this.model.id };
    // Each prompt is counted once however many choices it has, as OpenAI counts.
    const promptTokens = jobs.filter((_, i) => i % request.n === 0).reduce((sum, job) => sum + job.promptTokens.length, 0);
    const results: GenerationResult[] = [];
    let remaining = jobs.length;
    let failed = false;
    const usage = () => {
      const completionTokens = results.reduce((sum, r) => sum + r.completionTokens, 0);
      return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    };
    // With include_usage every chunk carries `usage: null` and one last chunk the totals, as OpenAI's streams do.
    const usageField = request.includeUsageInStream ? { usage: null } : {};
    const event = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    const chunk = (choice: object) => event({ ...base, choices: [choice], ...usageField });
    let handles: GenerationHandle[] = [];
    const fail = (error: Error) => {
      if (failed) return;
      failed = true;
      for (const handle of handles) handle.cancel();
      if (!request.stream) return this.fail(res, error);
      event(toApiError(error).toBody());
      res.end('data: [DONE]\n\n');
    };
    const listeners = jobs.map((_, index) => ({
      onText: (delta: string, logprobs: TokenLogprob[]) => {
        const choice = request.stream ? shape.piece(index, delta, logprobs) : null;
        if (choice) chunk(choice);
      },
      onFinish: (result: GenerationResult) => {
        results[index] = result;
        if (request.stream) chunk(shape.closing(index, result));
        if (--remaining > 0) return;
        if (!request.stream) {
          this.send(res, 200, { ...base, object: shape.object, choices: results.map((r, i) => shape.whole(i, r)), usage: usage() });
          return;
        }
        if (request.includeUsageInStream) event({ ...base, choices: [], usage: usage() });
        res.end('data: [DONE]\n\n');
      },
      onError: fail,
    }));
    handles = this.scheduler.submitAll(jobs.map((params, i) => ({ params, listener: listeners[i] })));
    if (request.stream) {
      this.metrics.countRequest(200);
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
      for (let index = 0; index < jobs.length; index++) {
        const opening = shape.opening(index);
        if (opening) chunk(opening);
      }
      res.flushHeaders();
    }
    this.metrics.countPrompt(promptTokens);
    res.once('finish', () => this.metrics.countLatency((performance.now() - arrived) / 1000));
    // A client that goes away before its answer is complete frees its slots at the next step boundary.
    const cancel = () => {
      for (const handle of handles) handle.cancel();
    };
    res.once('close', () => {
      if (!res.writableEnded) cancel();
    });
    if (res.socket?.destroyed) cancel();
  }

  private readBody(req: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooLarge = false;
      req.on('data', (chunk: Buffer) => {
        if (tooLarge) return;
        size += chunk.length;
        if (size > this.maxBodyBytes) {
          // Answer 413 at once; the rest of the body is read and dropped, and the connection closes after the answer.
          tooLarge = true;
          chunks.length = 0;
          reject(new ApiError(413, `the request body exceeds ${this.maxBodyBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });
  }

  private send(res: http.ServerResponse, status: number, body: unknown): void {
    if (res.headersSent || res.destroyed) return;
    this.metrics.countRequest(status);
    const text = JSON.stringify(body);
    if (status === 429) res.setHeader('Retry-After', '1');
    if (status === 413) res.setHeader('Connection', 'close');
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private fail(res: http.ServerResponse, error: unknown): void {
    const apiError = toApiError(error);
    if (apiError.status >= 500) process.stderr.write(`dsmoe serve: ${apiError.message}\n`);
    this.send(res, apiError.status, apiError.toBody());
  }
}

function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError(500, message, 'server_error');
}
