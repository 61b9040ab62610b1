// Opens auth straight on a data directory, for `kiln token` (works while the server runs: SQLite WAL).
import { createAuth } from '../auth/index.js';
import type { TokenCommandAuth } from './token-command.js';
import { DataDir } from '../store/data-dir.js';
import { openSqlite } from '../store/sqlite-db.js';
import { SqliteApiKeyStore } from '../store/sqlite-api-keys.js';

export async function openLocalAuth(dataDir: string): Promise<TokenCommandAuth> {
  const dirs = new DataDir(dataDir);
  await dirs.ensure();
  const db = openSqlite(dirs.database);
  try {
    const auth = await createAuth({
      mode: 'token',
      defaultKeyFile: dirs.authKeyFile,
      keyFile: process.env.KILN_AUTH_KEY_FILE || undefined,
      keys: new SqliteApiKeyStore(db),
    });
    return {
      tokens: auth.tokens,
      close: () => {
        db.close();
      },
    };
  } catch (err) {
    db.close();
    throw err;
  }
}
