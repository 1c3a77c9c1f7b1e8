import * as crypto from 'crypto';
import * as fs from 'fs';
import { UserError } from '../errors';

/** sha256 (hex) of the files' bytes in order, read in 8 MiB chunks so multi-GB weights never sit in memory. */
export function sha256Files(files: string[]): string {
  const hash = crypto.createHash('sha256');
  const buffer = Buffer.allocUnsafe(8 << 20);
  for (const file of files) {
    const fd = fs.openSync(file, 'r');
    try {
      for (let position = 0; ; ) {
        const n = fs.readSync(fd, buffer, 0, buffer.length, position);
        if (n === 0) break;
        hash.update(buffer.subarray(0, n));
        position += n;
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return hash.digest('hex');
}

/** Parses a JSON file; a missing file or bad JSON is a one-line UserError naming the file. */
export function readJsonFile(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UserError(`${file}: ${code ? `cannot read (${code})` : `invalid JSON (${(error as Error).message})`}`);
  }
}
