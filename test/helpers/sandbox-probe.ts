// Runs inside the bake sandbox (started by test/bake-sandbox.test.ts through
// the same launcher as a bake) and reports what it could do: reach a TCP
// port of the host, write or read paths of the host, who it is, what
// confines it. Reads its orders as one JSON line on stdin, writes one JSON
// line, then waits for stdin to close so the test can look at it from the host.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { lowerAutogroup } from '../../src/jobs/sandbox/autogroup.js';

// As bake-entry.js does first.
lowerAutogroup();

interface Orders {
  port: number;
  writes: string[];
  reads: string[];
}

function attempt(fn: () => void): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

function connect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, timeout: 3000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve('ok');
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve('ETIMEDOUT');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

let input = '';
process.stdin.on('data', (chunk: Buffer) => {
  if (input.includes('\n')) return;
  input += chunk.toString('utf8');
  if (!input.includes('\n')) return;
  const orders = JSON.parse(input.slice(0, input.indexOf('\n'))) as Orders;
  void (async () => {
    const report = {
      uid: process.getuid?.(),
      gid: process.getgid?.(),
      connect: await connect(orders.port),
      writes: Object.fromEntries(orders.writes.map((p) => [p, attempt(() => writeFileSync(p, 'probe'))])),
      reads: Object.fromEntries(orders.reads.map((p) => [p, attempt(() => readdirSync(p))])),
      noNewPrivs: /^NoNewPrivs:\s*(\d)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1],
      seccomp: /^Seccomp:\s*(\d)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1],
      env: Object.keys(process.env).sort(),
    };
    process.stdout.write(`${JSON.stringify({ type: 'probe', report })}\n`);
  })();
});
process.stdin.on('end', () => process.exit(0));
