import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { baseImagesOf, dockerfileInstructions, expandVariables } from './dockerfile.js';

describe('baseImagesOf', () => {
  const table: Array<{ name: string; dockerfile: string; args?: Record<string, string>; want: string[] }> = [
    { name: 'one FROM', dockerfile: 'FROM 127.0.0.1:5000/library/base:latest\nRUN true\n', want: ['127.0.0.1:5000/library/base:latest'] },
    { name: 'lowercase keyword and --platform', dockerfile: 'from --platform=$BUILDPLATFORM node:20 AS build\n', want: ['node:20'] },
    {
      name: 'stages are not base images',
      dockerfile: 'FROM golang:1.22 AS Builder\nRUN go build\nFROM builder AS test\nFROM alpine:3.20\nCOPY --from=builder /x /x\n',
      want: ['golang:1.22', 'alpine:3.20'],
    },
    { name: 'a stage named like its base', dockerfile: 'FROM base AS base\nFROM base\n', want: ['base'] },
    { name: 'scratch is nothing', dockerfile: 'FROM scratch\nCOPY x /\n', want: [] },
    { name: 'duplicates once', dockerfile: 'FROM a:1\nFROM a:1\nFROM b@sha256:' + 'c'.repeat(64) + '\n', want: ['a:1', 'b@sha256:' + 'c'.repeat(64)] },
    { name: 'ARG defaults', dockerfile: 'ARG NODE=20\nARG DISTRO="bookworm"\nFROM node:${NODE}-${DISTRO}\n', want: ['node:20-bookworm'] },
    { name: 'build args override defaults', dockerfile: 'ARG NODE=20\nFROM node:$NODE\n', args: { NODE: '22' }, want: ['node:22'] },
    { name: 'ARG after FROM does not apply to FROM', dockerfile: 'FROM a\nARG TAG=1\nFROM b:${TAG:-x}\n', want: ['a', 'b:x'] },
    { name: 'continuations and comments', dockerfile: 'FROM \\\n  # a comment inside\n  registry/app:1 \\\n  AS app\n', want: ['registry/app:1'] },
    { name: 'escape directive', dockerfile: '# escape=`\nFROM mcr/windows:1 `\n  AS w\n', want: ['mcr/windows:1'] },
    {
      name: 'heredoc bodies are not instructions',
      dockerfile: 'FROM a\nRUN <<EOF\nFROM not-an-image\nEOF\nRUN <<-"END" cat\n\tFROM neither\n\tEND\nFROM b\n',
      want: ['a', 'b'],
    },
    { name: 'CRLF line endings', dockerfile: 'FROM a:1\r\nRUN x\r\n', want: ['a:1'] },
  ];
  for (const row of table) it(row.name, () => assert.deepEqual(baseImagesOf(row.dockerfile, row.args), row.want));
});

describe('dockerfileInstructions', () => {
  it('joins continuations across empty lines', () => {
    assert.deepEqual(dockerfileInstructions('RUN a \\\n\n  b\nCMD c'), ['RUN a    b', 'CMD c']);
  });
});

describe('expandVariables', () => {
  const vars = { A: 'x', EMPTY: '' };
  const table: Array<[string, string]> = [
    ['$A', 'x'],
    ['${A}-y', 'x-y'],
    ['${MISSING:-d}', 'd'],
    ['${EMPTY:-d}', 'd'],
    ['${A:-d}', 'x'],
    ['${A:+alt}', 'alt'],
    ['${MISSING:+alt}', ''],
    ['$MISSING', ''],
    ['plain', 'plain'],
  ];
  for (const [input, want] of table) it(`${input} → ${want}`, () => assert.equal(expandVariables(input, vars), want));
});
