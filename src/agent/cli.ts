// discovery-agent command line: flags and environment -> one validated AgentOptions; the help text is in help.ts.
// Validation follows API.md's rules for names, ids and fields, so that a typo fails here (exit 2)
// before CMD is started, and not later as a 400 from the gateway.
import { parseArgs } from 'node:util';
import { HELP } from './help.ts';
import {
  ADDRESS_RULE,
  INSTANCE_ID_RULE,
  MAX_METADATA,
  MAX_METADATA_KEY_LENGTH,
  MAX_METADATA_VALUE_LENGTH,
  MAX_PORT,
  MAX_TAG_LENGTH,
  MAX_TAGS,
  MAX_TTL_SECONDS as MAX_TTL,
  MAX_WEIGHT,
  MIN_PORT,
  SERVICE_NAME_RULE,
  isAddress,
  isInstanceId,
  isServiceName,
} from '../rules.ts';

export interface AgentOptions {
  /** Base URL of the gateway, always ending in `/`. */
  readonly gateway: URL;
  readonly service: string;
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** Seconds; 0 = the instance never expires. */
  readonly ttl: number;
  readonly tags: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly weight: number | undefined;
  readonly check: URL | undefined;
  /** Seconds between the signal to CMD and SIGKILL. */
  readonly grace: number;
  /** Seconds between the deregistration and the signal to CMD. */
  readonly drain: number;
  readonly token: string | undefined;
  /** PEM file of the CA that signed the gateway's certificate (HTTPS with a private CA). */
  readonly caFile: string | undefined;
  /** CMD and its arguments; empty = no CMD (sidecar mode). */
  readonly command: readonly string[];
}

export type Invocation =
  | { readonly kind: 'help'; readonly text: string }
  | { readonly kind: 'version' }
  | { readonly kind: 'run'; readonly options: AgentOptions };

/** A bad or missing flag: the agent prints the message and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const DEFAULT_TTL_SECONDS = 10;
export const DEFAULT_GRACE_SECONDS = 10;
export const DEFAULT_DRAIN_SECONDS = 0;

const RUN_FLAGS = {
  gateway: { type: 'string' },
  service: { type: 'string' },
  address: { type: 'string' },
  port: { type: 'string' },
  id: { type: 'string' },
  ttl: { type: 'string' },
  tag: { type: 'string', multiple: true },
  meta: { type: 'string', multiple: true },
  weight: { type: 'string' },
  check: { type: 'string' },
  grace: { type: 'string' },
  drain: { type: 'string' },
  token: { type: 'string' },
  'ca-file': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * Reads `discovery-agent [run] ...` (argv without node and the script) and the environment.
 * Throws UsageError naming the flag for anything wrong.
 */
export function parseInvocation(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Invocation {
  const [first, ...rest] = argv;
  if (first === undefined) throw new UsageError('missing command: use "discovery-agent run ..." (see --help)');
  if (first === '--help' || first === '-h' || first === 'help') return { kind: 'help', text: HELP };
  if (first === '--version' || first === '-V') return { kind: 'version' };
  if (first !== 'run') {
    throw new UsageError(
      first.startsWith('-')
        ? `unknown option '${first}' before the command: use "discovery-agent run ${first} ..." (see --help)`
        : `unknown command '${first}': the only command is "run" (see --help)`,
    );
  }

  // Everything after the first bare `--` is CMD, taken verbatim (it may have flags of its own).
  const split = rest.indexOf('--');
  const flagArgs = split === -1 ? rest : rest.slice(0, split);
  const command = split === -1 ? [] : rest.slice(split + 1);

  let values: ReturnType<typeof parseRunFlags>;
  try {
    values = parseRunFlags(flagArgs);
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  if (values.help) return { kind: 'help', text: HELP };
  if (split !== -1 && command.length === 0) throw new UsageError("'--' must be followed by CMD (or leave '--' out)");

  const gatewayText = values.gateway ?? nonEmpty(env.DISCOVERY_GATEWAY);
  if (gatewayText === undefined) throw new UsageError('missing --gateway URL (or DISCOVERY_GATEWAY)');
  const gateway = parseHttpUrl(gatewayText, values.gateway !== undefined ? '--gateway' : 'DISCOVERY_GATEWAY');
  if (!gateway.pathname.endsWith('/')) gateway.pathname += '/';
  if (gateway.search !== '' || gateway.hash !== '') throw new UsageError('--gateway: the URL must not have a query or fragment');

  const service = required(values.service, '--service NAME');
  if (!isServiceName(service)) {
    throw new UsageError(`--service: '${service}' is not a service name (${SERVICE_NAME_RULE})`);
  }

  const address = required(values.address, '--address ADDR');
  if (!isAddress(address)) {
    throw new UsageError(`--address: '${address}' is not an address (${ADDRESS_RULE})`);
  }

  const port = integer(required(values.port, '--port PORT'), '--port', MIN_PORT, MAX_PORT);

  const id = values.id ?? `${address}:${port}`;
  if (!isInstanceId(id)) {
    throw new UsageError(
      `${values.id !== undefined ? '--id' : '--id (default {address}:{port})'}: '${id}' is not an instance id (${INSTANCE_ID_RULE})`,
    );
  }

  const ttl = values.ttl === undefined ? DEFAULT_TTL_SECONDS : integer(values.ttl, '--ttl', 0, MAX_TTL);

  const tags = values.tag ?? [];
  if (tags.length > MAX_TAGS) throw new UsageError(`--tag: at most ${MAX_TAGS} tags`);
  for (const tag of tags) {
    if (tag.length < 1 || tag.length > MAX_TAG_LENGTH) throw new UsageError(`--tag: '${tag}' must be 1-${MAX_TAG_LENGTH} characters`);
  }

  const metadata: Record<string, string> = Object.create(null); // `--meta __proto__=x` is data, not a prototype
  for (const pair of values.meta ?? []) {
    const eq = pair.indexOf('=');
    if (eq === -1) throw new UsageError(`--meta: '${pair}' is not KEY=VALUE`);
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (key.length < 1 || key.length > MAX_METADATA_KEY_LENGTH)
      throw new UsageError(`--meta: the key in '${pair}' must be 1-${MAX_METADATA_KEY_LENGTH} characters`);
    if (value.length > MAX_METADATA_VALUE_LENGTH)
      throw new UsageError(`--meta: the value of '${key}' is longer than ${MAX_METADATA_VALUE_LENGTH} characters`);
    metadata[key] = value; // a repeated key: the last one wins, as with environment layering
  }
  if (Object.keys(metadata).length > MAX_METADATA) throw new UsageError(`--meta: at most ${MAX_METADATA} keys`);

  const weight = values.weight === undefined ? undefined : integer(values.weight, '--weight', 0, MAX_WEIGHT);
  const check = values.check === undefined ? undefined : parseHttpUrl(values.check, '--check');
  const grace = values.grace === undefined ? DEFAULT_GRACE_SECONDS : seconds(values.grace, '--grace');
  const drain = values.drain === undefined ? DEFAULT_DRAIN_SECONDS : seconds(values.drain, '--drain');

  const token = values.token ?? nonEmpty(env.DISCOVERY_TOKEN);
  if (token !== undefined && (token === '' || /[\s]/.test(token))) {
    throw new UsageError(`${values.token !== undefined ? '--token' : 'DISCOVERY_TOKEN'}: a token is non-empty and has no spaces`);
  }

  const caFile = values['ca-file'];
  if (caFile === '') throw new UsageError('--ca-file: missing value');

  return {
    kind: 'run',
    options: { gateway, service, id, address, port, ttl, tags, metadata, weight, check, grace, drain, token, caFile, command },
  };
}

function parseRunFlags(args: string[]) {
  return parseArgs({ args, options: RUN_FLAGS, strict: true, allowPositionals: false }).values;
}

// node:util's messages already name the option ("Unknown option '--foo'"); keep them, minus Node's
// advice about `--` (ours means CMD follows) and the trailing period.
function describeParseError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string }).code;
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const arg = /'([^']*)'/.exec(message)?.[1];
    return `unexpected argument${arg === undefined ? '' : ` '${arg}'`}: put CMD after '--' (see --help)`;
  }
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const option = /'([^']*)'/.exec(message)?.[1];
    return `unknown option${option === undefined ? '' : ` '${option}'`} (see --help)`;
  }
  const option = /'(-[^' ]*)/.exec(message)?.[1];
  if (option !== undefined && message.includes('argument missing')) return `${option}: missing value`;
  return message.split('. ')[0]!.replace(/\.$/, '');
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`missing ${flag}`);
  return value;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function integer(text: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag}: '${text}' is not a whole number (${min}-${max})`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${flag}: ${text} is out of range (${min}-${max})`);
  return n;
}

function seconds(text: string, flag: string): number {
  if (!/^\d+(\.\d+)?$/.test(text)) throw new UsageError(`${flag}: '${text}' is not a number of seconds`);
  const n = Number(text);
  if (n > MAX_TTL) throw new UsageError(`${flag}: ${text} is out of range (0-${MAX_TTL})`);
  return n;
}

function parseHttpUrl(text: string, flag: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${flag}: '${text}' is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${flag}: '${text}' is not an http(s) URL`);
  // fetch refuses URLs with credentials; and they would end up in log lines. Tokens go in --token.
  if (url.username !== '' || url.password !== '') throw new UsageError(`${flag}: the URL must not contain a user name or password`);
  return url;
}
