// Keeping secrets (the build token, build secrets) out of build logs and
// error messages: every form a secret is likely to be printed in is replaced
// by `[redacted]`. Pure.
//
// Forms: the value itself; JSON-escaped and URL-encoded; base64 of it at any
// alignment (which covers `base64(user:token)` in a Docker config or a Basic
// header, `base64(token:)`, and `echo $SECRET | base64`), in standard and URL
// alphabets; and, for a secret of several lines, each long enough line.

export const REDACTED = '[redacted]';

/** Shorter pieces are not scrubbed on their own: they would match ordinary text. */
const MIN_PIECE = 8;

/** The strings to remove from output that may carry `secret`, longest first. */
export function secretForms(secret: string): string[] {
  if (secret === '') return [];
  const forms = new Set<string>([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)]);
  const bytes = Buffer.from(secret, 'utf8');
  for (let offset = 0; offset < 3; offset++) {
    const core = alignedBase64Core(bytes, offset);
    if (core.length >= MIN_PIECE) {
      forms.add(core);
      forms.add(core.replace(/\+/g, '-').replace(/\//g, '_'));
    }
  }
  const lines = secret.split(/\r?\n/);
  if (lines.length > 1) for (const line of lines) if (line.trim().length >= MIN_PIECE) forms.add(line);
  return [...forms].filter((f) => f !== '').sort((a, b) => b.length - a.length);
}

/**
 * The base64 characters that encode `bytes` whatever they follow, when they
 * start `offset` bytes into a 3-byte group: the characters touched by the
 * bytes before them or after them are dropped.
 */
function alignedBase64Core(bytes: Buffer, offset: number): string {
  const encoded = Buffer.concat([Buffer.alloc(offset), bytes]).toString('base64').replace(/=+$/, '');
  // Character k carries bits 6k…6k+5 of the stream: keep those inside the secret's bits.
  const start = Math.ceil((offset * 8) / 6);
  const end = Math.floor(((offset + bytes.length) * 8) / 6);
  return encoded.slice(start, end);
}

/** Removes every form of the secrets it was given. */
export class Scrubber {
  private forms: string[] = [];

  add(secret: string): void {
    this.forms = [...new Set([...this.forms, ...secretForms(secret)])].sort((a, b) => b.length - a.length);
  }

  scrub(text: string): string {
    let out = text;
    for (const form of this.forms) if (out.includes(form)) out = out.split(form).join(REDACTED);
    return out;
  }
}
