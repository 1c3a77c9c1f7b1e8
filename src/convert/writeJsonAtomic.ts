import * as fs from 'fs';

/** Writes pretty JSON to `NAME.tmp-<pid>` and renames it into place, so readers never see half a file. */
export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  fs.renameSync(tmp, file);
}
