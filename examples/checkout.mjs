import { createServer } from 'node:http';
import { DiscoveryClient } from 'etcd-discovery-gateway-client';

const port = Number(process.env.PORT ?? 3000);
const gateway = new DiscoveryClient({ gateways: process.env.DISCOVERY_GATEWAY.split(','), token: process.env.DISCOVERY_TOKEN });
const server = createServer(async (_req, res) => {
  const payments = await gateway.pick('payments', { tags: ['http'] }); // local and weighted, from the live view
  res.end(payments ? `payments at ${payments.address}:${payments.port}\n` : 'no payments instance\n');
}).listen(port);
const registration = gateway.register({ service: 'checkout', address: '127.0.0.1', port, ttl: 10 });
process.once('SIGTERM', async () => {
  await registration.close(); // status draining, then deregistered
  gateway.close();
  server.close();
});
