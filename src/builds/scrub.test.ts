import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REDACTED, Scrubber, secretForms } from './scrub.js';

const token = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJidWlsZDp4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ';

describe('Scrubber', () => {
  const scrubber = new Scrubber();
  scrubber.add(token);
  const b64 = (text: string) => Buffer.from(text).toString('base64');
  // How the token may show up in a builder's output.
  const table: Array<[string, string]> = [
    ['verbatim', `Authorization: Bearer ${token}`],
    ['base64 of user:token (Docker config.json, Basic auth)', `{"auths":{"127.0.0.1:5000":{"auth":"${b64(`kiln-build:${token}`)}"}}}`],
    ['base64 of token: (the token as the user name)', `Basic ${b64(`${token}:`)}`],
    ['base64 of the token alone', b64(token)],
    ['base64 of the token after one byte', b64(`x${token}`)],
    ['base64 of the token after two bytes', b64(`xy${token}\n`)],
    ['base64url', Buffer.from(`ab${token}`).toString('base64url')],
    ['JSON-escaped', JSON.stringify({ token: `${token}` })],
    ['URL-encoded', `?password=${encodeURIComponent(token)}`],
  ];
  for (const [name, line] of table) {
    it(`removes the token ${name}`, () => {
      const out = scrubber.scrub(line);
      assert.ok(out.includes(REDACTED), out);
      assert.ok(!out.includes(token), out);
      // What is left cannot be decoded back into the token either.
      for (const word of out.split(/[^A-Za-z0-9+/_-]+/)) {
        for (const decoded of [Buffer.from(word, 'base64').toString('latin1'), Buffer.from(word, 'base64url').toString('latin1')]) {
          assert.ok(!decoded.includes(token.slice(8, 40)), `${name}: ${word}`);
        }
      }
    });
  }

  it('leaves other text alone', () => {
    assert.equal(scrubber.scrub('#5 [2/3] RUN echo hello'), '#5 [2/3] RUN echo hello');
  });

  it('scrubs each line of a secret of several lines', () => {
    const s = new Scrubber();
    s.add('-----BEGIN KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END KEY-----');
    assert.equal(s.scrub('#7 0.2 c2VjcmV0LWtleS1tYXRlcmlhbA=='), `#7 0.2 ${REDACTED}`);
  });

  it('does not scrub the base64 of short secrets on its own, which would hit ordinary words', () => {
    assert.deepEqual(secretForms('abc'), ['abc']);
    assert.deepEqual(secretForms(''), []);
  });
});
