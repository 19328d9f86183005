// The drain on close (SIGTERM, SIGINT: main.ts): end change streams and parked queries,
// let requests in flight finish within the drain, then cut every connection still
// open, and close the registry (watch, store client).
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Http2SecureServer, Http2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** How often a closing gateway closes keep-alive connections whose answer has left. */
const IDLE_SWEEP_MS = 100;

/** Ending a server's connections on close: ask them to finish, later cut what is still open. */
interface Connections {
  finish(): void;
  cut(): void;
}

export default fp(async function shutdown(app: FastifyInstance, opts: { tls: boolean; drainMs: number }) {
  let drainTimer: NodeJS.Timeout | undefined;
  const connections = opts.tls ? tlsConnections(app.server as unknown as Http2SecureServer) : plainConnections(app.server);
  app.addHook('preClose', async () => {
    app.registryRoot.release();
    app.gateway.hub.closeAll();
    connections.finish();
    // Requests in flight get the drain (long enough for a write's store call and its wait
    // for the watch: config.ts) to finish; connections still open after that are cut.
    drainTimer = setTimeout(connections.cut, opts.drainMs);
    drainTimer.unref();
  });
  app.addHook('onClose', async () => {
    clearTimeout(drainTimer);
    connections.cut();
    await app.registryRoot.close();
  });
});

/**
 * HTTP/1.1: Node closes only the keep-alive connections idle when closing starts;
 * close each one as soon as its answer is out, so the process exits when the last
 * answer is.
 */
function plainConnections(server: FastifyInstance['server']): Connections {
  let idleSweep: NodeJS.Timeout | undefined;
  return {
    finish: () => {
      idleSweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
      idleSweep.unref();
    },
    cut: () => {
      clearInterval(idleSweep);
      server.closeAllConnections();
    },
  };
}

/**
 * TLS (the HTTP/2 server lacks closeAllConnections): every TCP connection is kept from
 * its first byte, so one that never completes its handshake cannot hold the close. On
 * close those still in their handshake are cut at once (no request can be in flight),
 * HTTP/2 sessions get GOAWAY (streams in flight go on); everything still open is cut
 * after the drain.
 */
function tlsConnections(server: Http2SecureServer): Connections {
  const sockets = new Set<Socket>();
  const handshaking = new Map<string, Socket>();
  const sessions = new Set<Http2Session>();
  const peer = (socket: Socket) => `${socket.remoteAddress}|${socket.remotePort}`;
  server.on('connection', (socket: Socket) => {
    const key = peer(socket);
    sockets.add(socket);
    handshaking.set(key, socket);
    socket.once('close', () => {
      sockets.delete(socket);
      if (handshaking.get(key) === socket) handshaking.delete(key);
    });
  });
  // The TLS socket wraps the TCP one: the same peer address and port.
  server.on('secureConnection', (socket: TLSSocket) => handshaking.delete(peer(socket)));
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  return {
    finish: () => {
      for (const socket of handshaking.values()) socket.destroy();
      for (const session of sessions) session.close();
    },
    cut: () => {
      for (const socket of sockets) socket.destroy();
    },
  };
}
