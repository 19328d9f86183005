// Process entry: read the environment, build the app, listen, drain on signals.
import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`etcd-discovery-gateway: ${err.message}\n`);
    process.exit(2);
  }

  let app;
  try {
    app = await buildApp(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      // A setting that names a file (AUTH_TOKENS_FILE) is checked when the file is read.
      process.stderr.write(`etcd-discovery-gateway: invalid configuration: ${err.message}\n`);
      process.exit(2);
    }
    const why = err instanceof Error ? err.message : String(err);
    process.stderr.write(`etcd-discovery-gateway: cannot start: the ${config.store.kind} store could not be read: ${why}\n`);
    process.exit(1);
  }
  if (config.store.kind === 'memory') {
    app.log.warn('no ETCD_ENDPOINTS: running on the embedded in-process store (one process; nothing is kept across restarts)');
  } else {
    app.log.info({ endpoints: config.store.endpoints.length, prefix: config.prefix }, 'using etcd');
  }
  if (!config.authTokensFile) app.log.warn('no AUTH_TOKENS_FILE: the gateway is open to every client (no access control)');

  // SIGTERM/SIGINT: stop accepting, end change streams, finish requests in flight, close the store client.
  closeWithGrace({ delay: config.shutdownGraceSeconds * 1000 }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'closing after an error');
    else app.log.info({ signal }, 'draining');
    await app.close();
  });
  await app.listen({ port: config.port, host: config.host });
}

void main();
