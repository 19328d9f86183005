// How requests are read: strict JSON bodies (no coercion: "port": "8080" is a 400), query
// strings parsed as text, JSON only (any other body is 415), and the shared schemas.
import { Ajv } from 'ajv';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Instance, Problem, Registered } from '../routes/schemas.ts';
import { STREAM_SCHEMAS } from '../routes/stream-schemas.ts';
import { isHost } from '../rules.ts';

export default fp(async function parsing(app: FastifyInstance) {
  const strict = new Ajv({ allErrors: false, coerceTypes: false, useDefaults: false, removeAdditional: false, strict: false });
  const lenient = new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: false, strict: false });
  for (const ajv of [strict, lenient]) ajv.addSchema(Instance).addFormat('host', isHost);
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : lenient).compile(schema));
  // An empty JSON body is null (a plain heartbeat); routes whose schema needs an object reject it.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    if (body === '' || (typeof body === 'string' && body.trim() === '')) return done(null, null);
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(Object.assign(new Error('the body is not valid JSON'), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' }), undefined);
    }
  });
  app.removeContentTypeParser('text/plain');
  for (const schema of [Instance, Problem, Registered, ...STREAM_SCHEMAS]) app.addSchema(schema);
});
