// The TLS server: HTTP/2 with HTTP/1.1 by ALPN, and the receive deadlines that Node
// enforces by itself only on a plain http.Server (requestTimeout, headersTimeout):
// the TLS handshake, an HTTP/1.1 request's headers, an HTTP/2 session's first stream
// and any request's body each get `receiveMs`, as a request does on plain HTTP.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants, createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { readSettingFile } from '../config.ts';
import { answerClientError } from '../plugins/errors.ts';

/** An HTTP/2 session without traffic for this long is closed (fastify's own default). */
const IDLE_SESSION_MS = 72_000;

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export function createTlsServer(files: { certFile: string; keyFile: string }, handler: Handler, receiveMs: number): Http2SecureServer {
  const server = createSecureServer(
    {
      allowHTTP1: true,
      cert: readSettingFile('TLS_CERT_FILE', files.certFile),
      key: readSettingFile('TLS_KEY_FILE', files.keyFile),
      handshakeTimeout: receiveMs,
    },
    handler as unknown as Parameters<typeof createSecureServer>[1],
  );
  // HTTP/1.1 sockets waiting for a request's headers: their deadline.
  const awaitingHeaders = new Map<Socket, NodeJS.Timeout>();
  const awaitHeaders = (socket: TLSSocket) => {
    clearTimeout(awaitingHeaders.get(socket));
    awaitingHeaders.set(
      socket,
      setTimeout(() => timedOut(socket, false), receiveMs),
    );
  };
  server.on('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === 'h2') return;
    awaitHeaders(socket);
    socket.once('close', () => {
      clearTimeout(awaitingHeaders.get(socket));
      awaitingHeaders.delete(socket);
    });
  });
  server.on('session', (session) => {
    // A session that opens no stream is as silent as a request without headers.
    const silent = setTimeout(() => session.destroy(), receiveMs);
    session.once('stream', () => clearTimeout(silent));
    session.once('close', () => clearTimeout(silent));
    session.setTimeout(IDLE_SESSION_MS, () => session.close());
  });
  server.on('request', (req: Request, res: Response) => {
    const socket = req.socket as TLSSocket;
    const headers = awaitingHeaders.get(socket);
    if (headers) {
      clearTimeout(headers);
      // Kept alive, the connection owes the next request's headers from this answer on.
      res.once('finish', () => awaitingHeaders.has(socket) && awaitHeaders(socket));
    }
    bodyDeadline(req, res, receiveMs);
  });
  return server;
}

/** A request's body must have arrived within `ms` of its headers; else the request is cut. */
function bodyDeadline(req: Request, res: Response, ms: number): void {
  if ('stream' in req ? req.stream.endAfterHeaders : req.complete) return;
  const timer = setTimeout(() => {
    if (req.readableEnded || res.writableFinished) return;
    if ('stream' in req) req.stream.close(constants.NGHTTP2_CANCEL);
    else timedOut(req.socket, res.headersSent);
  }, ms);
  timer.unref();
  const clear = () => clearTimeout(timer);
  req.once('end', clear).once('close', clear);
}

/** An HTTP/1.1 connection too slow to send its request: 408 when no answer has started, and closed. */
function timedOut(socket: Socket, answering: boolean): void {
  if (answering) socket.destroy();
  else answerClientError(Object.assign(new Error('the request did not arrive in time'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket);
}
