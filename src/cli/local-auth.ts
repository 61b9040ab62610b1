// Where `kiln token` creates and revokes keys: on a running server through its
// API (--url, admin key in KILN_TOKEN), or straight on the configured stores
// (works while the server runs). A directory that is not a Kiln data
// directory is refused unless --init asks to create one: a key signed in the
// wrong place is one the server rejects.
import { createAuth } from '../auth/index.js';
import { NotADataDirError } from '../store/errors.js';
import { openStores } from '../store/open.js';
import { clientFromEnv } from './api-client.js';
import type { TokenCommandAuth } from './token-command.js';

export async function openLocalAuth(dataDir: string, options: { init?: boolean; databaseUrl?: string } = {}): Promise<TokenCommandAuth> {
  const { databaseUrl } = options;
  const stores = await openStores({ dataDir, databaseUrl, owner: 'kiln token', shared: true, existing: !options.init }).catch((err: unknown) => {
    if (err instanceof NotADataDirError) {
      throw new Error(
        `${err.message}: pass the server's --data-dir (or KILN_DATA_DIR), ` +
          'or --url to create the key through the running server (admin key in KILN_TOKEN), or --init to start a new data directory there',
      );
    }
    throw err;
  });
  try {
    const keyFile = process.env.KILN_AUTH_KEY_FILE || undefined;
    const auth = await createAuth({ mode: 'token', defaultKeyFile: stores.dirs.authKeyFile, keyFile, keys: stores.apiKeys });
    return {
      tokens: auth.tokens,
      where: `data dir ${stores.dirs.root} (signing key ${keyFile ?? stores.dirs.authKeyFile})`,
      close: () => stores.close(),
    };
  } catch (err) {
    await stores.close();
    throw err;
  }
}

export function openRemoteAuth(url: string): TokenCommandAuth {
  const client = clientFromEnv(url);
  return {
    where: `server ${client.base}`,
    tokens: {
      async createApiKey(request) {
        const key = await client.json<{ token: string; jti: string; role: 'admin' | 'tenant'; tenant: string | null; expiresAt: string }>('/api/v1/tokens', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ tenant: request.tenant ?? undefined, admin: request.admin ?? false, ttlSeconds: request.ttlSeconds }),
        });
        return { ...key, expiresAt: new Date(key.expiresAt) };
      },
      async revoke(jti) {
        const res = await client.request(`/api/v1/tokens/${encodeURIComponent(jti)}`, { method: 'DELETE' });
        if (res.status === 404) return 'unknown';
        return (await client.parse<{ outcome: 'revoked' | 'already_revoked' }>(res)).outcome;
      },
    },
    close: () => {},
  };
}
