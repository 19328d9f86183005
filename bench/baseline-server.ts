// The framework baseline: one plain fastify route (same fastify version as the
// gateway, logger off) answering the bytes the gateway answers for the same
// service, with the headers captured from the gateway's answer (content type,
// ETag, X-Registry-Revision). What the gateway is measured against.
import Fastify from 'fastify';
import { readFileSync } from 'node:fs';

const body = readFileSync(process.env.BODY_FILE ?? '/dev/null', 'utf8');
const headers = JSON.parse(process.env.HEADERS_JSON ?? '{}') as Record<string, string>;
const app = Fastify({ logger: false });
app.get('/health', async () => ({ status: 'ok' }));
app.get('/services/:name', async (_req, reply) => reply.headers(headers).send(body));
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
