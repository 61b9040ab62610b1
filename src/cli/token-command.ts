// `kiln token create` and `kiln token revoke`: API keys for tenants and admins.
import type { Command } from 'commander';
import type { AuthTokens } from '../auth/index.js';
import { parseDuration } from '../auth/duration.js';
import { TokenRequestError } from '../auth/token-service.js';

export const DEFAULT_API_KEY_TTL = '90d';

/** What the commands need, opened only when one runs (the caller opens the data dir and its database). */
export interface TokenCommandAuth {
  tokens: Pick<AuthTokens, 'createApiKey' | 'revoke'>;
  close(): Promise<void> | void;
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
  openAuth: (options: { dataDir?: string; databaseUrl?: string }) => Promise<TokenCommandAuth>,
  output: TokenCommandOutput = processOutput,
): void {
  const token = program
    .command('token')
    .description('create and revoke API keys')
    .option('--data-dir <dir>', 'the data directory of the Kiln whose keys to manage (env KILN_DATA_DIR, default ./kiln-data)')
    .option('--database-url <url>', 'its PostgreSQL database, when it uses one (env KILN_DATABASE_URL)');
  const open = () => openAuth(token.opts<{ dataDir?: string; databaseUrl?: string }>());

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
      await withAuth(open, async ({ tokens }) => {
        try {
          const key = await tokens.createApiKey({ tenant: opts.tenant ?? null, admin: opts.admin, ttlSeconds });
          const who = key.role === 'admin' ? `admin${key.tenant ? ` (tenant ${key.tenant})` : ''}` : `tenant ${key.tenant}`;
          output.out(`${key.token}\n`);
          output.err(`API key ${key.jti} for ${who}, expires ${key.expiresAt.toISOString()}; revoke with: kiln token revoke ${key.jti}\n`);
        } catch (err) {
          if (err instanceof TokenRequestError) command.error(err.message);
          throw err;
        }
      });
    });

  token
    .command('revoke')
    .description('refuse an API key (or build token) from now on')
    .argument('<jti>', 'the key id printed by `kiln token create`')
    .action(async (jti: string, _opts: unknown, command: Command) => {
      await withAuth(open, async ({ tokens }) => {
        const outcome = await tokens.revoke(jti);
        if (outcome === 'unknown') command.error(`no API key has the id ${jti}`);
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
