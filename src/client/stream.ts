// One change stream (API.md "Change events") read with fetch, so the token goes in a header,
// and parsed by eventsource-parser. Yields each event as it is parsed; ends when the gateway
// ends the stream; throws GatewayUnreachableError when the connection breaks.
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { GatewayRefusedError, GatewayUnreachableError } from './errors.ts';
import { describeNetworkError, withTimeout } from './transport.ts';

/** Opens the stream; resolves once the gateway answered 200 with its headers. */
export async function openStream(
  fetchStream: (url: URL, init: RequestInit) => Promise<Response>,
  url: URL,
  headers: Record<string, string>,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<Response> {
  const deadline = withTimeout(signal, timeoutMs);
  let response: Response;
  try {
    response = await fetchStream(url, { headers: { ...headers, accept: 'text/event-stream' }, signal: deadline.signal });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw new GatewayUnreachableError(describeNetworkError(err, deadline.timedOut(), timeoutMs), { cause: err });
  } finally {
    deadline.dispose(); // the stream itself may stay quiet for long: only the headers have a deadline
  }
  if (response.ok && response.body !== null) return response;
  const problem = ((await response.json().catch(() => undefined)) ?? {}) as { code?: unknown; detail?: unknown };
  throw new GatewayRefusedError(
    response.status,
    typeof problem.code === 'string' ? problem.code : undefined,
    typeof problem.detail === 'string' ? problem.detail : '',
  );
}

/** The events of an open stream, batch by batch (one network read may carry several events). */
export async function* readEvents(response: Response, signal: AbortSignal): AsyncGenerator<EventSourceMessage[]> {
  let parsed: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => parsed.push(event) });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const cancel = () => void reader.cancel().catch(() => undefined);
  signal.addEventListener('abort', cancel, { once: true });
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<string>;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (signal.aborted) return;
        throw new GatewayUnreachableError(`change stream broke: ${describeNetworkError(err, false, 0)}`, { cause: err });
      }
      if (chunk.done) return;
      parser.feed(chunk.value);
      if (parsed.length > 0) {
        const batch = parsed;
        parsed = [];
        yield batch;
      }
    }
  } finally {
    signal.removeEventListener('abort', cancel);
    cancel();
  }
}
