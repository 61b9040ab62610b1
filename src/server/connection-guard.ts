// Admission of TCP connections, before any byte is parsed: a cap on open
// connections in all and per client address (more are answered with a
// minimal 429 and closed), and a deadline for connections that never send a
// byte (Node's headersTimeout only starts counting at a request's first byte).
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export interface ConnectionGuardOptions {
  maxConnections: number;
  maxConnectionsPerAddress: number;
  /** A connection that has sent nothing after this is closed. */
  silentTimeoutMs: number;
  /** The settings' names, for the refusal's message. */
  settingNames: { maxConnections: string; maxConnectionsPerAddress: string };
  onRefused(limit: 'maxConnections' | 'maxConnectionsPerAddress'): void;
  onSilentClosed(): void;
}

/** How long a refused client gets to read its 429 before the socket is destroyed. */
const REFUSAL_LINGER_MS = 2000;
const RETRY_AFTER_SECONDS = 1;

export class ConnectionGuard {
  private open = 0;
  private readonly perAddress = new Map<string, number>();

  constructor(private readonly options: ConnectionGuardOptions) {}

  get openConnections(): number {
    return this.open;
  }

  get addresses(): number {
    return this.perAddress.size;
  }

  /**
   * Puts the guard in front of the server's own connection handling: the
   * http module's listener only sees admitted sockets.
   */
  install(server: Server): void {
    const handlers = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (!this.admit(socket)) return;
      for (const handler of handlers) handler.call(server, socket);
    });
  }

  private admit(socket: Socket): boolean {
    const address = socket.remoteAddress ?? 'unknown';
    const fromAddress = this.perAddress.get(address) ?? 0;
    const { maxConnections, maxConnectionsPerAddress } = this.options;
    if (this.open >= maxConnections) {
      this.refuse(socket, 'maxConnections', `the server has ${this.open} open connections, its limit (${this.options.settingNames.maxConnections})`);
      return false;
    }
    if (fromAddress >= maxConnectionsPerAddress) {
      this.refuse(
        socket,
        'maxConnectionsPerAddress',
        `${address} has ${fromAddress} open connections, the limit per client address (${this.options.settingNames.maxConnectionsPerAddress})`,
      );
      return false;
    }
    this.open++;
    this.perAddress.set(address, fromAddress + 1);
    socket.once('close', () => {
      this.open--;
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left === 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
    const silent = setTimeout(() => {
      if (socket.bytesRead === 0 && !socket.destroyed) {
        this.options.onSilentClosed();
        socket.destroy();
      }
    }, this.options.silentTimeoutMs);
    silent.unref();
    socket.once('close', () => clearTimeout(silent));
    return true;
  }

  /** A complete HTTP answer written straight to the socket; the request is never read, let alone run. */
  private refuse(socket: Socket, limit: 'maxConnections' | 'maxConnectionsPerAddress', reason: string): void {
    this.options.onRefused(limit);
    const body = JSON.stringify({
      errors: [{ code: 'TOO_MANY_REQUESTS', message: `too many connections: ${reason}; retry later or reuse connections`, detail: {} }],
    });
    socket.on('error', () => socket.destroy());
    socket.end(
      'HTTP/1.1 429 Too Many Requests\r\n' +
        'content-type: application/json; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(body)}\r\n` +
        `retry-after: ${RETRY_AFTER_SECONDS}\r\n` +
        'connection: close\r\n\r\n' +
        body,
    );
    // Read and drop whatever the client sends so closing does not reset the connection before it has read the answer.
    socket.resume();
    setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
  }
}
