// The gateway's logger: pino, JSON lines, secrets redacted. It is ours, not fastify's:
// given a logger, fastify gives every request a child logger of its own, which on the
// cached read cost about 6% of the gateway's CPU per answer even when made lazily
// (BENCHMARKS.md, "The read path at the floor"). fastify runs with none, app.log is this
// one (app.ts), and lines about a request carry its `reqId` themselves: req.log is a no-op.
import { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from '../config.ts';

export function createLogger(config: Pick<Config, 'logLevel'>, stream?: DestinationStream): Logger {
  // pino serializes `err` (message, stack) by itself; nothing logs headers, this is the safety net.
  const options = {
    level: config.logLevel,
    redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
  };
  return stream ? pino(options, stream) : pino(options);
}

/**
 * fastify's own lines about requests: none (plugins/observability.ts writes one per
 * request, REQUEST_LOG), except the 503 fastify sends by itself to a request that arrives
 * while the gateway closes, which no hook of ours sees.
 */
export class RequestLines extends LogController {
  constructor() {
    super({ disableRequestLogging: true });
  }

  override serviceUnavailable(_logger: FastifyBaseLogger, server: FastifyInstance): void {
    server.log.info({ statusCode: 503 }, 'request refused: the gateway is closing');
  }
}
