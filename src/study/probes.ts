/**
 * Probes that separate memorization from reasoning (scored by exact match in probe_scoring.ts).
 *
 * **Reasoning.** Procedurally generated problems, one per line, mixed into the training text at a set share of its
 * characters; the model is scored on held-out problems it never saw.
 * - `addition`: `a+b=c`, a and b uniform in [0, 10^digits) (written without leading zeros).
 * - `modular`: `a%m=r`, a uniform in [0, 10^digits), m uniform in [2, 99], r = a mod m.
 * - `binding`: `x=3;y=x+4;z=y-2;z?=5` — a chain of `chain` assignments over distinct letters, each after the first
 *   adding or subtracting a digit to the previous variable; the answer is the last variable's value.
 * A problem's prompt is `\n` + everything up to and including its last `=` ; its answer is the rest and the `\n`
 * that ends the line (so an exact match also means the model stopped).
 * Held-out problems are drawn first (stream "eval" of the probe seed), each task equally often; the training
 * problems come from another stream (stream "train") and skip every held-out question, so no held-out problem is
 * in the training text. The same seed gives the same items and the same training text.
 *
 * **Memorization.** Verses (lines) of the training split of the point's corpus, exactly as the trainer splits it
 * (cutTextBlocks + validationBlockMask with the recipe's seed and validation fraction): the prompt is the
 * `prompt_chars` characters before the middle of the verse, the answer the next `answer_chars` characters. A
 * control set is cut the same way from held-out verses: what the model gets right there is what it can guess from
 * the language alone (the King James text repeats many phrases), so memorization is the gap between the two.
 */
import { UserError } from '../errors';
import { cutTextBlocks, rngFor, validationBlockMask, type Rng } from '../data';

export const REASONING_TASKS = ['addition', 'modular', 'binding'] as const;
export type ReasoningTask = (typeof REASONING_TASKS)[number];

export interface ProbeSpec {
  seed: number;
  share: number; // share of the training text's characters that are reasoning problems
  tasks: ReasoningTask[];
  digits: number;
  chain: number; // assignments per binding problem
  items: number; // held-out problems (and memorization items, and control items)
  prompt_chars: number;
  answer_chars: number;
}

/** One exact-match item: the model sees `prompt` and must produce `answer`. */
export interface ProbeItem {
  kind: string; // task name, or "memorization" / "memorization_control"
  prompt: string;
  answer: string;
}

const STREAM_EVAL = 1;
const STREAM_TRAIN = 2;
const STREAM_PLACE = 3;
const STREAM_VERSES = 4;

type Raw = Record<string, unknown>;

function positiveInteger(file: string, field: string, value: unknown, fallback: number, max = 1e6): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new UserError(`${file}: probes.${field}: expected an integer in 1..${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function parseProbeSpec(file: string, raw: unknown): ProbeSpec {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new UserError(`${file}: probes: expected a mapping, got ${JSON.stringify(raw)}`);
  const fields = raw as Raw;
  const allowed = ['seed', 'share', 'tasks', 'digits', 'chain', 'items', 'prompt_chars', 'answer_chars'];
  for (const key of Object.keys(fields)) {
    if (!allowed.includes(key)) throw new UserError(`${file}: probes.${key}: unknown field; allowed: ${allowed.join(', ')}`);
  }
  const share = fields.share ?? 0.05;
  if (typeof share !== 'number' || !(share >= 0 && share < 0.5)) {
    throw new UserError(`${file}: probes.share: expected a number in [0, 0.5), got ${JSON.stringify(share)}`);
  }
  const tasks = fields.tasks ?? [...REASONING_TASKS];
  if (!Array.isArray(tasks) || tasks.length === 0 || !tasks.every((t) => (REASONING_TASKS as readonly string[]).includes(t))) {
    throw new UserError(`${file}: probes.tasks: expected a non-empty list of ${REASONING_TASKS.join(', ')}, got ${JSON.stringify(tasks)}`);
  }
  const seed = fields.seed ?? 1;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) {
    throw new UserError(`${file}: probes.seed: expected an integer in [0, 2^32), got ${JSON.stringify(seed)}`);
  }
  return {
    seed,
    share,
    tasks: [...new Set(tasks as ReasoningTask[])],
    digits: positiveInteger(file, 'digits', fields.digits, 3, 12),
    chain: positiveInteger(file, 'chain', fields.chain, 3, 8),
    items: positiveInteger(file, 'items', fields.items, 64, 100000),
    prompt_chars: positiveInteger(file, 'prompt_chars', fields.prompt_chars, 32, 100000),
    answer_chars: positiveInteger(file, 'answer_chars', fields.answer_chars, 12, 100000),
  };
}

/** One problem of a task: its question (through the last "=") and its answer, without the line break. */
export function generateProblem(task: ReasoningTask, rng: Rng, spec: Pick<ProbeSpec, 'digits' | 'chain'>): { question: string; answer: string } {
  const limit = 10 ** spec.digits;
  switch (task) {
    case 'addition': {
      const a = rng.int(limit);
      const b = rng.int(limit);
      return { question: `${a}+${b}=`, answer: String(a + b) };
    }
    case 'modular': {
      const a = rng.int(limit);
      const m = 2 + rng.int(98);
      return { question: `${a}%${m}=`, answer: String(a % m) };
    }
    case 'binding': {
      const letters = rng.shuffle('abcdefghijklmnopqrstuvwxyz'.split('')).slice(0, spec.chain);
      let value = rng.int(10);
      const parts = [`${letters[0]}=${value}`];
      for (let i = 1; i < letters.length; i++) {
        const step = 1 + rng.int(9);
        const add = rng.int(2) === 0;
        value += add ? step : -step;
        parts.push(`${letters[i]}=${letters[i - 1]}${add ? '+' : '-'}${step}`);
      }
      return { question: `${parts.join(';')};${letters[letters.length - 1]}?=`, answer: String(value) };
    }
  }
}

/** The held-out problems: `items` of them, the tasks in turn, no question twice. */
export function heldOutProblems(spec: ProbeSpec): ProbeItem[] {
  const rng = rngFor(spec.seed, STREAM_EVAL);
  const seen = new Set<string>();
  const items: ProbeItem[] = [];
  for (let attempts = 0; items.length < spec.items; attempts++) {
    if (attempts > spec.items * 100) throw new UserError(`probes: cannot draw ${spec.items} distinct problems with digits ${spec.digits}; lower probes.items`);
    const task = spec.tasks[items.length % spec.tasks.length];
    const { question, answer } = generateProblem(task, rng, spec);
    if (seen.has(question)) continue;
    seen.add(question);
    items.push({ kind: task, prompt: `\n${question}`, answer: `${answer}\n` });
  }
  return items;
}

/**
 * The training text with problem lines inserted after randomly chosen lines, so that problems make up about
 * `share` of its characters; no held-out question appears. Returns the text and the number of problems inserted.
 */
export function mixProblems(text: string, spec: ProbeSpec): { text: string; problems: number } {
  if (spec.share === 0) return { text, problems: 0 };
  const heldOut = new Set(heldOutProblems(spec).map((item) => item.prompt.slice(1)));
  const lines = text.split('\n');
  const wanted = (spec.share / (1 - spec.share)) * text.length; // characters of problems to insert
  const draw = rngFor(spec.seed, STREAM_TRAIN);
  const problems: string[] = [];
  let characters = 0;
  while (characters < wanted) {
    const task = spec.tasks[draw.int(spec.tasks.length)];
    const { question, answer } = generateProblem(task, draw, spec);
    if (heldOut.has(question)) continue;
    const line = question + answer;
    problems.push(line);
    characters += line.length + 1;
  }
  // Each problem goes after a uniformly chosen line (several may follow the same line).
  const place = rngFor(spec.seed, STREAM_PLACE);
  const after = new Map<number, string[]>();
  for (const problem of problems) {
    const at = place.int(lines.length);
    const list = after.get(at);
    if (list) list.push(problem);
    else after.set(at, [problem]);
  }
  const out: string[] = [];
  lines.forEach((line, i) => {
    out.push(line);
    const inserted = after.get(i);
    if (inserted) out.push(...inserted);
  });
  return { text: out.join('\n'), problems: problems.length };
}

const PROBLEM_LINE = /^[0-9a-z%+=;?-]*=[0-9-]*$/;

/**
 * Memorization items from the training split (and control items from the validation split) of `text`, split as the
 * trainer splits it with `seed` and `validationFraction`. Verses are lines that are not problems and hold at least
 * `answer_chars` + 8 characters; each item's prompt is the `prompt_chars` characters before the verse's middle.
 */
export function memorizationItems(
  text: string,
  seed: number,
  validationFraction: number,
  spec: ProbeSpec,
): { memorization: ProbeItem[]; control: ProbeItem[] } {
  const blocks = cutTextBlocks(text);
  const validation = validationBlockMask(seed, validationFraction, blocks.length);
  const candidates: { training: number[]; held: number[] } = { training: [], held: [] }; // where each verse's answer starts
  let offset = 0;
  blocks.forEach((block, b) => {
    let lineStart = 0;
    for (const line of block.split('\n')) {
      const start = offset + lineStart;
      lineStart += line.length + 1;
      if (line.length < spec.answer_chars + 8 || PROBLEM_LINE.test(line)) continue;
      const middle = start + Math.floor((line.length - spec.answer_chars) / 2);
      if (middle - spec.prompt_chars < 0) continue;
      (validation[b] ? candidates.held : candidates.training).push(middle);
    }
    offset += block.length;
  });
  const pick = (positions: number[], stream: number, kind: string): ProbeItem[] => {
    const chosen = rngFor(seed, STREAM_VERSES, stream).shuffle([...positions]).slice(0, spec.items);
    return chosen.map((at) => ({ kind, prompt: text.slice(at - spec.prompt_chars, at), answer: text.slice(at, at + spec.answer_chars) }));
  };
  return { memorization: pick(candidates.training, 0, 'memorization'), control: pick(candidates.held, 1, 'memorization_control') };
}
