// The .d.ts files in src/ are generated from the JSDoc of the .js files next to them:
//
//   npm run types         regenerate src/*.d.ts
//   npm run check-types   fail when the committed src/*.d.ts differ from what the JSDoc gives
//
// tsc runs on a copy of the .js files, so that it reads the JSDoc and never the .d.ts
// being replaced (an import of './x.js' would otherwise resolve to ./x.d.ts).

import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');
// Runs inside an AudioWorklet, loaded by URL: not part of the typed API.
const UNTYPED = new Set(['mic-worklet.js']);
const TSC_OPTIONS = [
  '--allowJs', '--declaration', '--emitDeclarationOnly', '--strict',
  '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext',
  '--lib', 'es2022,dom', '--skipLibCheck', '--pretty', 'false',
];

const header = (js) => `// Generated from the JSDoc in ${js} by \`npm run types\`: edit ${js}, not this file.\n`;

/** The declarations the JSDoc gives now: { 'client.d.ts': text, … }. */
export function generate() {
  const work = mkdtempSync(join(tmpdir(), 'earshot-types-'));
  try {
    const sources = readdirSync(SRC).filter((f) => f.endsWith('.js') && !UNTYPED.has(f));
    for (const f of sources) cpSync(join(SRC, f), join(work, 'in', f));
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    try {
      execFileSync(
        process.execPath,
        [tsc, ...TSC_OPTIONS, '--outDir', join(work, 'out'), ...sources.map((f) => join(work, 'in', f))],
        { encoding: 'utf8', stdio: 'pipe' },
      );
    } catch (e) {
      throw new Error(`tsc failed:\n${e.stdout}${e.stderr}`);
    }
    const out = {};
    for (const f of sources) {
      const dts = f.replace(/\.js$/, '.d.ts');
      out[dts] = header(f) + readFileSync(join(work, 'out', dts), 'utf8');
    }
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Differences between the committed declarations and `generated`, as messages (none: up to date). */
export function differences(generated = generate()) {
  const problems = [];
  for (const [name, text] of Object.entries(generated)) {
    const path = join(SRC, name);
    if (!existsSync(path)) problems.push(`src/${name} is missing`);
    else if (readFileSync(path, 'utf8') !== text) problems.push(`src/${name} differs from its JSDoc`);
  }
  for (const name of readdirSync(SRC).filter((f) => f.endsWith('.d.ts'))) {
    if (!(name in generated)) problems.push(`src/${name} has no .js source`);
  }
  return problems;
}

function main(argv) {
  const generated = generate();
  if (argv.includes('--check')) {
    const problems = differences(generated);
    if (problems.length) {
      console.error(`${problems.join('\n')}\nrun \`npm run types\` and commit the result`);
      return 1;
    }
    console.log(`src/*.d.ts match the JSDoc (${Object.keys(generated).length} files)`);
    return 0;
  }
  for (const [name, text] of Object.entries(generated)) writeFileSync(join(SRC, name), text);
  for (const name of readdirSync(SRC).filter((f) => f.endsWith('.d.ts') && !(f in generated))) {
    rmSync(join(SRC, name));
  }
  console.log(`wrote ${Object.keys(generated).length} declaration files to src/`);
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
