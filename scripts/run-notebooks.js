#!/usr/bin/env node
'use strict';
/**
 * Launcher of the headless notebook runner (src/notebooks/run.ts). Notebooks import project modules from `../src`
 * as TypeScript, so this registers a require hook that strips types with the `typescript` package's
 * `transpileModule` (no type check: `npm run typecheck` does that), then hands over. No build step is needed, so
 * `npm run notebooks` works on a clean clone after `npm install`.
 */
const fs = require('fs');

function registerTypeScript() {
  if (require.extensions['.ts']) return;
  const ts = require('typescript');
  require.extensions['.ts'] = (module, filename) => {
    const { outputText } = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
      fileName: filename,
      reportDiagnostics: false,
      compilerOptions: {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.CommonJS,
        esModuleInterop: true,
        resolveJsonModule: true,
        inlineSourceMap: true,
      },
    });
    module._compile(outputText, filename);
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
