// Opens auth straight on the configured stores, for `kiln token` (works while the server runs).
import { createAuth } from '../auth/index.js';
import { openStores } from '../store/open.js';
import type { TokenCommandAuth } from './token-command.js';

export async function openLocalAuth(dataDir: string): Promise<TokenCommandAuth> {
  const stores = await openStores({ dataDir, owner: 'kiln token', shared: true });
  try {
    const auth = await createAuth({
      mode: 'token',
      defaultKeyFile: stores.dirs.authKeyFile,
      keyFile: process.env.KILN_AUTH_KEY_FILE || undefined,
      keys: stores.apiKeys,
    });
    return { tokens: auth.tokens, close: () => stores.close() };
  } catch (err) {
    await stores.close();
    throw err;
  }
}
