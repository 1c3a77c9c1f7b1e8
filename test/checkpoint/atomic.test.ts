import fs = require('fs');
import * as os from 'os';
import * as path from 'path';
import { writeFileAtomic } from '../../src/checkpoint/atomic';
import { writeSafetensors } from '../../src/checkpoint/safetensors';

// A plain copy of fs whose functions can be spied on; the modules under test read it through their import bindings.
jest.mock('fs', () => ({ ...jest.requireActual('fs') }));

/** Records fsync and rename calls in order, so the test sees data synced before the rename and the folder after. */
function recordSyncs(): { events: string[]; restore(): void } {
  const events: string[] = [];
  const fsync = jest.spyOn(fs, 'fsyncSync').mockImplementation(((fd: number) => {
    events.push(fs.fstatSync(fd).isDirectory() ? 'fsync-folder' : 'fsync-file');
  }) as typeof fs.fsyncSync);
  const realRename = fs.renameSync;
  const rename = jest.spyOn(fs, 'renameSync').mockImplementation(((from: fs.PathLike, to: fs.PathLike) => {
    events.push('rename');
    realRename(from, to);
  }) as typeof fs.renameSync);
  return { events, restore: () => (fsync.mockRestore(), rename.mockRestore()) };
}

describe('atomic replacement', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-atomic-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test.each([
    ['writeFileAtomic', (file: string) => writeFileAtomic(file, 'new contents')],
    ['writeSafetensors', (file: string) => writeSafetensors(file, [{ name: 'x', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }])],
  ])('%s syncs the data before the rename and the folder after it', (_, write) => {
    const file = path.join(dir, `${_}.bin`);
    fs.writeFileSync(file, 'old');
    const { events, restore } = recordSyncs();
    try {
      write(file);
    } finally {
      restore();
    }
    expect(events).toEqual(['fsync-file', 'rename', 'fsync-folder']);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  test('a failed write leaves the previous file and no temporary behind', () => {
    const file = path.join(dir, 'kept.json');
    fs.writeFileSync(file, 'previous');
    const fsync = jest.spyOn(fs, 'fsyncSync').mockImplementation(() => {
      throw new Error('disk full');
    });
    try {
      expect(() => writeFileAtomic(file, 'replacement')).toThrow('disk full');
    } finally {
      fsync.mockRestore();
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('previous');
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('kept.json.tmp'))).toEqual([]);
  });
});
