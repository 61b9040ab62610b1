// Finding the token a client presents. Pure.
//
// Accepted: `Bearer <token>`; Basic with the token as password (any username);
// Basic with the token as username and an empty password, the `base64(token + ":")`
// form builders write into ~/.docker/config.json.

export type Presented =
  | { kind: 'none' }
  | { kind: 'token'; token: string }
  | { kind: 'malformed'; reason: string };

export function presentedByAuthorization(header: string | string[] | undefined): Presented {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === '') return { kind: 'none' };
  const match = /^\s*(\S+)\s+(\S+)\s*$/.exec(value);
  if (!match) return { kind: 'malformed', reason: 'the Authorization header is not "<scheme> <credentials>"' };
  const scheme = match[1].toLowerCase();
  if (scheme === 'bearer') return { kind: 'token', token: match[2] };
  if (scheme === 'basic') return presentedByBasic(match[2]);
  return { kind: 'malformed', reason: `the Authorization scheme "${match[1]}" is not supported; use Bearer or Basic` };
}

/** The token in a username/password pair: the password, or the username when the password is empty. */
export function presentedByPassword(username: string | undefined, password: string | undefined): Presented {
  if (password) return { kind: 'token', token: password };
  if (username) return { kind: 'token', token: username };
  return { kind: 'none' };
}

function presentedByBasic(encoded: string): Presented {
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return { kind: 'malformed', reason: 'Basic credentials must be base64 of "username:password"' };
  return presentedByPassword(decoded.slice(0, colon), decoded.slice(colon + 1));
}
