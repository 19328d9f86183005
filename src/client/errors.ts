// The two ways a call to the gateway fails. Both extend GatewayError, so one `instanceof`
// catches every failure the client reports.

/** The stable problem codes of API.md; gateways may add more. */
export type ProblemCode =
  | 'invalid-request'
  | 'instance-not-found'
  | 'no-instance-available'
  | 'unauthorized'
  | 'forbidden'
  | 'payload-too-large'
  | 'unsupported-media-type'
  | 'store-unavailable'
  | 'too-many-requests'
  | 'too-many-streams'
  | 'revision-not-reached'
  | (string & {});

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
