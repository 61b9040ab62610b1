#!/usr/bin/env node
// Entry point of the `kiln` command; the TypeScript is compiled by `npm ci` (prepare).
//
// V8 flags are set here, before the program allocates: `kiln serve` turns off
// concurrent marking (see serve-command.ts), and switching it off while a
// marking job is already running aborted V8 ("unreachable code" in
// ConcurrentMarking::RunMajor) during busy starts.
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--no-concurrent-marking');
await import('../dist/src/cli/main.js');
