/**
 * An error caused by the user's input (a bad recipe, a missing file, a corrupt checkpoint).
 * The CLI prints its message on one line and exits non-zero, without a stack trace.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** Formats any thrown value as the one-line message the CLI prints. */
export function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s*\n\s*/g, ' ');
}
