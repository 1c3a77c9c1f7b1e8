#!/usr/bin/env node
// Links the project's own CLI into node_modules/.bin after `npm install` / `npm ci` in this checkout. npm links the
// bins of dependencies there but not the root package's; without the link `npx dsmoe` walks the whole dependency
// tree to find the project's bin (about 30 s on two cores) before the CLI starts, with it npx runs it at once.
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const binDir = path.join(root, 'node_modules', '.bin');
const link = path.join(binDir, 'dsmoe');
const target = path.relative(binDir, path.join(root, 'bin', 'dsmoe.js'));
if (fs.existsSync(path.join(root, 'node_modules'))) {
  fs.mkdirSync(binDir, { recursive: true });
  fs.rmSync(link, { force: true });
  fs.symlinkSync(target, link);
}
