import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { dockerConfigJson, writeDockerConfig } from './credentials.js';

describe('dockerConfigJson', () => {
  it('encodes user:token as Basic auth for the registry host', () => {
    const json = JSON.parse(dockerConfigJson('127.0.0.1:8083', { username: 'build-b1', password: 'tok.en' }));
    assert.deepEqual(json, { auths: { '127.0.0.1:8083': { auth: Buffer.from('build-b1:tok.en').toString('base64') } } });
  });
  it('is empty for an anonymous registry', () => {
    assert.equal(dockerConfigJson('r', null), '{"auths":{}}');
  });
});

describe('writeDockerConfig', () => {
  it('writes config.json readable by its owner only', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'kiln-cred-'));
    try {
      const dir = await writeDockerConfig(path.join(tmp, 'docker'), 'r:1', { username: 'u', password: 'p' });
      assert.equal((await stat(dir)).mode & 0o777, 0o700);
      const file = path.join(dir, 'config.json');
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.equal(await readFile(file, 'utf8'), dockerConfigJson('r:1', { username: 'u', password: 'p' }));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
