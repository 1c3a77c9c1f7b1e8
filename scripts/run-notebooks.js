#!/usr/bin/env node
'use strict';
/**
 * Launcher of the headless notebook runner (src/notebooks/run.ts). Notebooks import project modules from `../src`
 * as TypeScript, so this registers a require hook that strips types with the `typescript` package's
 * `transpileModule` (no type check: `npm run typecheck` does that), then hands over. No build step is needed, so
 * `npm run notebooks` works on a clean clone after `npm install`.
 *
 * Transpiled files are cached under node_modules/.cache/dsmoe-ts, keyed by path, content and compiler version:
 * each notebook runs in its own process and would otherwise transpile the same ~100 modules again.
 */
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const CACHE_DIR = path.join(__dirname, '..', 'node_modules', '.cache', 'dsmoe-ts');

function registerTypeScript() {
  if (require.extensions['.ts']) return;
  const compilerVersion = require('typescript/package.json').version;
  let ts = null; // loaded on the first cache miss only
  require.extensions['.ts'] = (module, filename) => {
    const source = fs.readFileSync(filename, 'utf8');
    const key = crypto.createHash('sha1').update(`${compilerVersion}\0${filename}\0${source}`).digest('hex');
    const cached = path.join(CACHE_DIR, `${key}.js`);
    let output;
    try {
      output = fs.readFileSync(cached, 'utf8');
    } catch {
      ts = ts || require('typescript');
      output = ts.transpileModule(source, {
        fileName: filename,
        reportDiagnostics: false,
        compilerOptions: {
          target: ts.ScriptTarget.ES2022,
          module: ts.ModuleKind.CommonJS,
          esModuleInterop: true,
          resolveJsonModule: true,
          inlineSourceMap: true,
        },
      }).outputText;
      try {
        fs.mkdirSync(CACHE_DIR, { recursive: true });
        const partial = `${cached}.tmp-${process.pid}`;
        fs.writeFileSync(partial, output);
        fs.renameSync(partial, cached);
      } catch {
        // A read-only install still runs, just without the cache.
      }
    }
    module._compile(output, filename);
  };
}

module.exports = { registerTypeScript };

if (require.main === module) {
  registerTypeScript();
  require('../src/notebooks/run.ts')
    .main(process.argv.slice(2), __filename)
    .then((code) => process.exit(code), (error) => {
      console.error(error);
      process.exit(1);
    });
}
