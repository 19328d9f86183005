// A renewed TLS certificate and key (TLS_CERT_FILE, TLS_KEY_FILE) served without a
// restart: cert-manager or a mounted Secret replaces the files, and the next
// handshake presents the new pair. Connections and change streams already open keep
// the session they have. When the files are read again, and what happens to a pair
// that does not load, is certificate-files.ts's.
import type { FastifyInstance } from 'fastify';
import type { Server as TlsServer } from 'node:tls';
import { followCertificates } from '../certificate-files.ts';
import type { GatewayEvents } from '../events.ts';

export default async function tlsReload(
  app: FastifyInstance,
  opts: { certFile: string; keyFile: string; events: GatewayEvents },
): Promise<void> {
  const server = app.server as unknown as TlsServer;
  const following = await followCertificates(
    { cert: opts.certFile, key: opts.keyFile },
    {
      certificate: 'serving',
      name: 'TLS certificate',
      settings: 'TLS_CERT_FILE/TLS_KEY_FILE',
      keeping: 'serving the current one',
      use: ({ cert, key }) => server.setSecureContext({ cert, key }),
    },
    opts.events,
    app.log,
  );
  app.addHook('onClose', () => following.close());
}
