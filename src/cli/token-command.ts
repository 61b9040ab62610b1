// `kiln token create` and `kiln token revoke`: API keys for tenants and admins.
import type { Command } from 'commander';
import type { ApiKeyRequest, IssuedApiKey } from '../auth/token-service.js';
import type { RevokeOutcome } from '../store/api-key-store.js';
import { parseDuration } from '../auth/duration.js';
import { TokenRequestError } from '../auth/token-service.js';
import { KilnApiError } from './api-client.js';

export const DEFAULT_API_KEY_TTL = '90d';

export type CreatedKey = Pick<IssuedApiKey, 'token' | 'jti' | 'role' | 'tenant' | 'expiresAt'>;

/** What the commands need, opened only when one runs: a data dir and its database, or a running server. */
export interface TokenCommandAuth {
  tokens: {
    createApiKey(request: ApiKeyRequest): Promise<CreatedKey>;
    revoke(jti: string): Promise<RevokeOutcome>;
  };
  /** Where the keys are made, for the person reading stderr: `data dir /x (signing key …)` or `server http://…`. */
  where: string;
  close(): Promise<void> | void;
}

export interface TokenTarget {
  dataDir?: string;
  databaseUrl?: string;
  url?: string;
  /** Create the data directory when it is not one yet. */
  init?: boolean;
}

export interface TokenCommandOutput {
  /** The result a script captures (the key itself). */
  out(text: string): void;
  /** What a person reads. */
  err(text: string): void;
}

const processOutput: TokenCommandOutput = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

export function registerTokenCommands(
  program: Command,
  openAuth: (target: TokenTarget) => Promise<TokenCommandAuth>,
  output: TokenCommandOutput = processOutput,
): void {
  const token = program
    .command('token')
    .description('create and revoke API keys')
    .option('--url <url>', 'manage keys on a running server (needs an admin API key in KILN_TOKEN)')
    .option('--data-dir <dir>', 'the data directory of the Kiln whose keys to manage (env KILN_DATA_DIR, default ./kiln-data)')
    .option('--database-url <url>', 'its PostgreSQL database, when it uses one (env KILN_DATABASE_URL)')
    .option('--init', 'create the data directory if it is not one yet (for the first admin key, before the first `kiln serve`)');
  const open = () => {
    const target = token.opts<TokenTarget>();
    if (target.url && (target.dataDir || target.databaseUrl)) throw new Error('give --url (a running server) or --data-dir/--database-url, not both');
    return openAuth(target);
  };

  token
    .command('create')
    .description('print a new API key (also the password for docker login, skopeo --creds, crane auth)')
    .option('--tenant <name>', 'the tenant the key acts for (required unless --admin)')
    .option('--admin', 'an admin key: every repository, and admin builds that fill the global cache', false)
    .option('--ttl <duration>', 'lifetime, e.g. 12h, 30d, 1y', DEFAULT_API_KEY_TTL)
    .action(async (opts: { tenant?: string; admin: boolean; ttl: string }, command: Command) => {
      let ttlSeconds: number;
      try {
        ttlSeconds = parseDuration(opts.ttl);
      } catch (err) {
        command.error(`--ttl: ${(err as Error).message}`);
      }
      await withAuth(open, async ({ tokens, where }) => {
        try {
          const key = await tokens.createApiKey({ tenant: opts.tenant ?? null, admin: opts.admin, ttlSeconds });
          const who = key.role === 'admin' ? `admin${key.tenant ? ` (tenant ${key.tenant})` : ''}` : `tenant ${key.tenant}`;
          output.out(`${key.token}\n`);
          output.err(`API key ${key.jti} for ${who}, expires ${key.expiresAt.toISOString()}, made in ${where}; revoke with: kiln token revoke ${key.jti}\n`);
        } catch (err) {
          if (err instanceof TokenRequestError || err instanceof KilnApiError) command.error(err.message);
          throw err;
        }
      });
    });

  token
    .command('revoke')
    .description('refuse an API key (or build token) from now on')
    .argument('<jti>', 'the key id printed by `kiln token create`')
    .action(async (jti: string, _opts: unknown, command: Command) => {
      await withAuth(open, async ({ tokens, where }) => {
        let outcome: RevokeOutcome;
        try {
          outcome = await tokens.revoke(jti);
        } catch (err) {
          if (err instanceof KilnApiError) command.error(err.message);
          throw err;
        }
        if (outcome === 'unknown') command.error(`no API key has the id ${jti} in ${where}`);
        output.out(outcome === 'revoked' ? `revoked ${jti}\n` : `${jti} was already revoked\n`);
      });
    });
}

async function withAuth(openAuth: () => Promise<TokenCommandAuth>, run: (auth: TokenCommandAuth) => Promise<void>): Promise<void> {
  const auth = await openAuth();
  try {
    await run(auth);
  } finally {
    await auth.close();
  }
}
