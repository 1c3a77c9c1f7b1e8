/**
 * Turns one TypeScript notebook cell into a script that runs in the shared global context, the way tslab runs
 * cells: declarations become globals (so later cells see them), top-level `await` works, and `import`s of project
 * modules or packages become `require`s.
 *
 * Steps: (1) rewrite imports to `const … = require(…)` in the TypeScript source, (2) strip types with
 * `ts.transpileModule`, (3) hoist top-level `const`/`let`/function/class names to `var`s outside an async wrapper
 * and turn their declarations into assignments inside it.
 */
import ts from 'typescript';

export interface CompiledCell {
  /** JavaScript for `vm.runInThisContext`; evaluates to the promise of the cell's completion. */
  script: string;
  /** Names the cell declares at top level. */
  declared: string[];
}

export function compileCell(source: string): CompiledCell {
  const withRequires = rewriteImports(source);
  const { outputText } = ts.transpileModule(withRequires, {
    reportDiagnostics: false,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, esModuleInterop: true, sourceMap: false },
  });
  return hoistDeclarations(outputText);
}

/** `import …` → `const … = require(…)`; type-only imports vanish. */
function rewriteImports(source: string): string {
  const file = ts.createSourceFile('cell.ts', source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const edits: { start: number; end: number; text: string }[] = [];
  for (const statement of file.statements) {
    if (!ts.isImportDeclaration(statement)) continue;
    const from = (statement.moduleSpecifier as ts.StringLiteral).text;
    const req = `require(${JSON.stringify(from)})`;
    const clause = statement.importClause;
    const parts: string[] = [];
    if (!clause) parts.push(`${req};`);
    else if (!clause.isTypeOnly) {
      if (clause.name) parts.push(`const ${clause.name.text} = ((m) => (m && m.__esModule ? m.default : m))(${req});`);
      const bindings = clause.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) parts.push(`const ${bindings.name.text} = ${req};`);
      if (bindings && ts.isNamedImports(bindings)) {
        const names = bindings.elements
          .filter((e) => !e.isTypeOnly)
          .map((e) => (e.propertyName ? `${e.propertyName.text}: ${e.name.text}` : e.name.text));
        if (names.length) parts.push(`const { ${names.join(', ')} } = ${req};`);
      }
    }
    edits.push({ start: statement.getStart(file), end: statement.getEnd(), text: parts.join(' ') });
  }
  return applyEdits(source, edits);
}

function hoistDeclarations(js: string): CompiledCell {
  const file = ts.createSourceFile('cell.js', js, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
  const declared: string[] = [];
  const exported: string[] = [];
  const edits: { start: number; end: number; text: string }[] = [];
  for (const statement of file.statements) {
    if (ts.isVariableStatement(statement)) {
      const assignments: string[] = [];
      for (const declaration of statement.declarationList.declarations) {
        collectNames(declaration.name, declared);
        if (declaration.initializer) {
          assignments.push(`(${declaration.name.getText(file)} = ${declaration.initializer.getText(file)});`);
        }
      }
      edits.push({ start: statement.getStart(file), end: statement.getEnd(), text: assignments.join(' ') });
    } else if (ts.isFunctionDeclaration(statement) && statement.name) {
      declared.push(statement.name.text);
      exported.push(statement.name.text); // hoisted inside the wrapper: copy it out when the cell starts
    } else if (ts.isClassDeclaration(statement) && statement.name) {
      declared.push(statement.name.text);
      edits.push({ start: statement.getStart(file), end: statement.getStart(file), text: `${statement.name.text} = ` });
      edits.push({ start: statement.getEnd(), end: statement.getEnd(), text: ';' });
    }
  }
  const body = applyEdits(js, edits);
  const prologue = declared.length ? `var ${[...new Set(declared)].join(', ')}; ` : '';
  const copies = exported.map((name) => `globalThis.${name} = ${name};`).join(' ');
  // Everything before the body stays on its first line, so stack line numbers are those of the transpiled cell.
  return { script: `${prologue}(async () => { ${copies}${body}\n})()`, declared: [...new Set(declared)] };
}

function collectNames(name: ts.BindingName, into: string[]): void {
  if (ts.isIdentifier(name)) into.push(name.text);
  else for (const element of name.elements) if (!ts.isOmittedExpression(element)) collectNames(element.name, into);
}

function applyEdits(text: string, edits: { start: number; end: number; text: string }[]): string {
  let out = text;
  for (const edit of [...edits].sort((a, b) => b.start - a.start || b.end - a.end)) {
    out = out.slice(0, edit.start) + edit.text + out.slice(edit.end);
  }
  return out;
}
