// A renewed etcd client certificate (ETCD_CERT_FILE, ETCD_KEY_FILE, and the CA of
// ETCD_CA_FILE) used without a restart: the store moves onto a new etcd client that
// presents it, with its watches, lease renewals and probes (RegistryRoot.reconnectStore).
// When the files are read again, and what happens to a pair that does not load, is
// certificate-files.ts's; a new client that etcd does not answer is dropped, and the
// files are tried again on the next change, poll or SIGHUP.
import type { FastifyInstance } from 'fastify';
import { followCertificates, type CertificateFiles } from '../certificate-files.ts';
import type { GatewayEvents } from '../events.ts';
import type { RegistryRoot } from '../registry/index.ts';

export default async function etcdCertReload(
  app: FastifyInstance,
  opts: { files: CertificateFiles; root: RegistryRoot; events: GatewayEvents },
): Promise<void> {
  const following = await followCertificates(
    opts.files,
    {
      certificate: 'etcd-client',
      name: 'etcd client certificate',
      settings: 'ETCD_CA_FILE/ETCD_CERT_FILE/ETCD_KEY_FILE',
      keeping: 'the store client keeps the current one',
      use: (tls) => opts.root.reconnectStore(tls),
    },
    opts.events,
    app.log,
  );
  app.addHook('onClose', () => following.close());
}
