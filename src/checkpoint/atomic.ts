import * as fs from 'fs';
import * as path from 'path';

/**
 * Replacing a file so that a crash at any moment leaves either the old file or the new one, never a mix: write
 * `FILE.tmp-<pid>`, fsync it (else the rename can reach the disk before the data does and a power cut leaves an
 * empty file under the old name), rename over FILE, then fsync the folder so the rename itself is durable.
 */

/** The temporary name a replacement of `file` is written under. */
export function temporaryName(file: string): string {
  return `${file}.tmp-${process.pid}`;
}

/** Renames the (already fsynced) temporary file over `file` and makes the rename durable. */
export function commitTemporary(temporary: string, file: string): void {
  fs.renameSync(temporary, file);
  syncFolder(path.dirname(file));
}

function syncFolder(folder: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(folder, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a directory; the data itself was synced before the rename.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Writes `file` atomically and durably (see above): `write` fills the open temporary file; on any error the
 * temporary is removed and the old `file` is untouched.
 */
export function writeAtomicWith<T>(file: string, write: (fd: number) => T): T {
  const temporary = temporaryName(file);
  const fd = fs.openSync(temporary, 'w');
  let result: T;
  try {
    result = write(fd);
    fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(temporary, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  commitTemporary(temporary, file);
  return result;
}

/** Writes `data` to `file` atomically and durably (see above). */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  writeAtomicWith(file, (fd) => fs.writeFileSync(fd, data));
}

export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}
