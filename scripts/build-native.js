#!/usr/bin/env node
/**
 * Builds the native runtime (native/) offline with CMake: run by `npm install` and `npm run build:native`.
 *
 *   node scripts/build-native.js              addon → native/build/Release/dsmoe_native.node
 *   node scripts/build-native.js --test       + C++ kernel tests and measurements (ctest, no Node)
 *   node scripts/build-native.js --sanitize   ASan + UBSan build of the C++ tests in native/build-sanitize, run them
 *   node scripts/build-native.js --portable   the C++ tests without any x86 vector code (the ARM build), run them
 *
 * CUDA: when CMake finds nvcc the addon also links native/cuda (device: 'cuda', docs/cuda.md) and the script says so.
 *   DSMOE_CUDA=off     never build it (the CPU-only addon, as on a machine without nvcc); DSMOE_CUDA=on requires nvcc
 *   DSMOE_CUDA_ARCHS   CMake CUDA architectures (default "90a-real;90-virtual": H100/H200 code + PTX for newer cards)
 *
 * Node-API headers come from the node-api-headers package (or the system's Node headers); nothing is downloaded.
 * When a tool is missing the script says which and how to install it, and exits non-zero.
 */
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const nativeDir = path.join(root, 'native');
const args = new Set(process.argv.slice(2));
const jobs = String(Math.max(1, os.cpus().length));

function fail(message) {
  process.stderr.write(`dsmoe native build: ${message}\n`);
  process.exit(1);
}

function have(cmd, versionArg = '--version') {
  const r = spawnSync(cmd, [versionArg], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n')[0] : null;
}

function run(cmd, argv, opts = {}) {
  process.stdout.write(`> ${cmd} ${argv.join(' ')}\n`);
  const r = spawnSync(cmd, argv, { stdio: 'inherit', cwd: root, ...opts });
  if (r.error) fail(`could not run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${argv[0] ?? ''} failed (exit ${r.status}); see the output above`);
}

/** Directory holding node_api.h: the node-api-headers package, else the headers of the running Node. */
function nodeApiInclude() {
  const candidates = [];
  try {
    candidates.push(require('node-api-headers').include_dir);
  } catch {
    /* package absent: fall back to the system's headers */
  }
  candidates.push(path.join(path.dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node');
  const dir = candidates.find((d) => d && fs.existsSync(path.join(d, 'node_api.h')));
  if (!dir) {
    fail(
      'Node-API headers (node_api.h) not found. Run `npm install` so that the node-api-headers package is present, ' +
        'or install your distribution\'s Node development headers (e.g. `apt-get install libnode-dev`).',
    );
  }
  return dir;
}

function nodeAddonApiInclude() {
  try {
    const dir = require('node-addon-api').include_dir;
    const abs = path.isAbsolute(dir) ? dir : path.join(root, dir);
    if (fs.existsSync(path.join(abs, 'napi.h'))) return abs;
  } catch {
    /* reported below */
  }
  fail('node-addon-api (napi.h) not found: run `npm install` in ' + root + ' first.');
}

function checkTools() {
  if (!have('cmake')) {
    fail(
      'CMake is not installed or not on PATH. Install CMake ≥ 3.16 (Debian/Ubuntu: `sudo apt-get install cmake`, ' +
        'macOS: `brew install cmake`, or `pip install cmake`) and run `npm run build:native`.',
    );
  }
  const cxx = process.env.CXX || 'c++';
  if (!have(cxx)) {
    fail(
      `no C++17 compiler found (${cxx}). Install g++ ≥ 9 or clang ≥ 10 (Debian/Ubuntu: \`sudo apt-get install build-essential\`, ` +
        'macOS: `xcode-select --install`) and run `npm run build:native`.',
    );
  }
}

function configure(buildDir, extra) {
  const generator = have('ninja') ? ['-G', 'Ninja'] : [];
  const cache = path.join(buildDir, 'CMakeCache.txt');
  // A cache from another generator, a moved checkout or another DSMOE_CUDA mode cannot be reused (CMake cannot add
  // the CUDA language to a cache configured without it: the addon then links cudart without its directory): start
  // that build folder over.
  if (fs.existsSync(cache)) {
    const text = fs.readFileSync(cache, 'utf8');
    const wantNinja = generator.length > 0;
    const isNinja = /CMAKE_GENERATOR:INTERNAL=Ninja/.test(text);
    const wantCuda = extra.find((a) => a.startsWith('-DDSMOE_CUDA='))?.slice('-DDSMOE_CUDA='.length);
    const hadCuda = /^DSMOE_CUDA:[A-Z]+=(.*)$/m.exec(text)?.[1];
    const cudaChanged = wantCuda !== undefined && hadCuda !== undefined && wantCuda !== hadCuda;
    if (wantNinja !== isNinja || cudaChanged || !text.includes(`CMAKE_HOME_DIRECTORY:INTERNAL=${nativeDir}`)) {
      fs.rmSync(buildDir, { recursive: true, force: true });
    }
  }
  run('cmake', ['-S', nativeDir, '-B', buildDir, ...generator, '-DCMAKE_BUILD_TYPE=Release', ...extra]);
}

/** CMake arguments for the CUDA part, from DSMOE_CUDA (auto | on | off) and DSMOE_CUDA_ARCHS. */
function cudaArgs() {
  const mode = (process.env.DSMOE_CUDA || 'auto').toLowerCase();
  if (!['auto', 'on', 'off'].includes(mode)) fail(`DSMOE_CUDA must be auto, on or off, got ${JSON.stringify(process.env.DSMOE_CUDA)}`);
  if (mode === 'off') return ['-DDSMOE_CUDA=OFF'];
  const archs = process.env.DSMOE_CUDA_ARCHS || '90a-real;90-virtual';
  if (!/^[0-9a-z;-]+$/.test(archs)) fail(`DSMOE_CUDA_ARCHS must be a CMake architecture list such as "90a-real;90-virtual", got ${JSON.stringify(archs)}`);
  return [`-DDSMOE_CUDA=${mode.toUpperCase()}`, `-DCMAKE_CUDA_ARCHITECTURES=${archs}`];
}

function main() {
  checkTools();
  const buildDir = path.join(nativeDir, 'build');
  if (args.has('--sanitize')) {
    const sanDir = path.join(nativeDir, 'build-sanitize');
    configure(sanDir, ['-DDSMOE_ADDON=OFF', '-DDSMOE_TESTS=ON', '-DDSMOE_SANITIZE=ON']);
    run('cmake', ['--build', sanDir, '-j', jobs]);
    run('ctest', ['--test-dir', sanDir, '--output-on-failure', '-R', 'kernels'], {
      env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1', UBSAN_OPTIONS: 'print_stacktrace=1' },
    });
    return;
  }
  if (args.has('--portable')) {
    const portDir = path.join(nativeDir, 'build-portable');
    configure(portDir, ['-DDSMOE_ADDON=OFF', '-DDSMOE_TESTS=ON', '-DDSMOE_PORTABLE=ON']);
    run('cmake', ['--build', portDir, '-j', jobs]);
    run('ctest', ['--test-dir', portDir, '--output-on-failure']);
    return;
  }
  const withTests = args.has('--test');
  configure(buildDir, [
    `-DNODE_API_INCLUDE=${nodeApiInclude()}`,
    `-DNODE_ADDON_API_INCLUDE=${nodeAddonApiInclude()}`,
    `-DDSMOE_TESTS=${withTests ? 'ON' : 'OFF'}`,
    ...cudaArgs(),
  ]);
  run('cmake', ['--build', buildDir, '-j', jobs]);
  const addon = path.join(buildDir, 'Release', 'dsmoe_native.node');
  if (!fs.existsSync(addon)) fail(`the build finished but ${addon} is missing`);
  // Load the new binary in a child process first: a broken build must not crash the caller.
  const probe = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(addon)}).cpuInfo()))`], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) fail(`the addon was built but does not load:\n${probe.stderr}`);
  process.stdout.write(`dsmoe native: built ${path.relative(root, addon)} (${probe.stdout.trim()})\n`);
  const info = JSON.parse(probe.stdout);
  process.stdout.write(
    info.cudaBuilt
      ? `dsmoe native: CUDA runtime linked (device: 'cuda' available; ${info.cudaDevices} GPU${info.cudaDevices === 1 ? '' : 's'} visible now)\n`
      : `dsmoe native: CPU only (${(process.env.DSMOE_CUDA || '').toLowerCase() === 'off' ? 'DSMOE_CUDA=off' : 'no nvcc found'}); the CUDA runtime is built when nvcc is on PATH\n`,
  );
  if (withTests) run('ctest', ['--test-dir', buildDir, '--output-on-failure']);
}

main();
