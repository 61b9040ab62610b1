#!/usr/bin/env node
// Entry point of the `kiln` command; the TypeScript is compiled by `npm ci` (prepare).
import { setFlagsFromString } from 'node:v8';

// Blob traffic allocates a buffer per socket read, so V8 runs a major GC every
// 64 MiB received. Marking on a helper thread takes a core from the clients and
// workers sharing the machine (measured: a 512 MiB push is ~7 % faster on 2
// cores without it); the heap is small, so marking on the main thread costs
// only a few milliseconds per collection. Set before any module loads: a V8
// flag changed while a collection is under way can crash the process.
if (process.argv[2] === 'serve') {
  setFlagsFromString('--no-concurrent-marking');
  // Lets the upload path run a minor collection every 16 MiB received (src/store/fs/young-gc.ts).
  setFlagsFromString('--expose-gc');
}
await import('../dist/src/cli/main.js');
