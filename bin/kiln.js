#!/usr/bin/env node
// Entry point of the `kiln` command; the TypeScript is compiled by `npm ci` (prepare).
import '../dist/src/cli/main.js';
