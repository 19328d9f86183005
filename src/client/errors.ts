// The two ways a call to the gateway fails. Both extend GatewayError, so one `instanceof`
// catches every failure the client reports.
import type { Problem } from './types.ts';

/**
 * A problem's stable code, as the gateway's OpenAPI document lists them (docs/errors.md); the
 * open end keeps a client working against a newer gateway that adds codes.
 */
export type ProblemCode = Problem['code'] | (string & {});

/** Any failure of a call to the gateway. */
export class GatewayError extends Error {
  override readonly name: string = 'GatewayError';
}

/** The gateway answered with an error status; `code` is the problem's code (absent when the answer was not problem+json). */
export class GatewayRefusedError extends GatewayError {
  override readonly name = 'GatewayRefusedError';
  constructor(
    readonly status: number,
    readonly code: ProblemCode | undefined,
    readonly detail: string,
  ) {
    super(`HTTP ${status}${code === undefined ? '' : ` ${code}`}${detail === '' ? '' : `: ${detail}`}`);
  }
}

/** No answer: connection refused or reset, DNS failure, or no answer within the timeout. */
export class GatewayUnreachableError extends GatewayError {
  override readonly name = 'GatewayUnreachableError';
}
