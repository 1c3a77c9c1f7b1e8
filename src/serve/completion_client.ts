import http from 'node:http';

/** A raw answer: status, parsed JSON body (when it is JSON) and, for streams, the `data:` payloads in order. */
export interface ClientResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  events: string[];
}

/**
 * A minimal loopback client on Node's own `http` (for the tests and the load test): one request per connection,
 * so that load-test connections behave like independent clients.
 */
export function request(
  port: number,
  method: string,
  path: string,
  body?: string | object,
  options: { host?: string; signal?: AbortSignal } = {},
): Promise<ClientResponse> {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: options.host ?? '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        signal: options.signal,
        headers: payload === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = null;
          try {
            json = JSON.parse(text);
          } catch {
            json = null;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json, events: parseEvents(text) });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Payloads of the `data:` lines of a server-sent event stream, in order. */
export function parseEvents(text: string): string[] {
  return text
    .split('\n\n')
    .map((block) => block.trim())
    .filter((block) => block.startsWith('data: '))
    .map((block) => block.slice('data: '.length));
}

/** The text of a streamed completion, reassembled from its chunks (throws on an error event). */
export function streamedText(events: string[]): string {
  let text = '';
  for (const event of events) {
    if (event === '[DONE]') break;
    const chunk = JSON.parse(event);
    if (chunk.error) throw new Error(chunk.error.message);
    for (const choice of chunk.choices) text += choice.text;
  }
  return text;
}
