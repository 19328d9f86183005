// discovery-agent entry: the only file of the agent that reads process.argv, process.env and
// installs signal handlers. Exits with the code API.md fixes (see EXIT STATUS in help.ts).
import { readFileSync } from 'node:fs';
import { Agent } from './agent.ts';
import { parseInvocation, UsageError, type Invocation } from './cli.ts';
import { DiscoveryClient } from '../client/index.ts';

const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
const FORWARDED_SIGNALS = ['SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const;

function log(line: string): void {
  process.stderr.write(`discovery-agent: ${line}\n`);
}

function version(): string {
  // src/agent/main.ts and dist/agent/main.js both sit two levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

async function main(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  let invocation: Invocation;
  try {
    invocation = parseInvocation(argv, env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    log(err.message);
    return 2;
  }
  if (invocation.kind === 'help') {
    process.stdout.write(invocation.text);
    return 0;
  }
  if (invocation.kind === 'version') {
    process.stdout.write(`discovery-agent ${version()}\n`);
    return 0;
  }

  const { options } = invocation;
  let ca: string | undefined;
  try {
    ca = options.caFile === undefined ? undefined : readFileSync(options.caFile, 'utf8');
  } catch (err) {
    log(`--ca-file: cannot read ${options.caFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    return 2;
  }
  const client = new DiscoveryClient({
    gateways: options.gateway.href,
    ...(options.token === undefined ? {} : { token: options.token }),
    ...(ca === undefined ? {} : { ca }),
  });
  const agent = new Agent(options, client, log);
  const onStop = (signal: NodeJS.Signals) => agent.signal(signal);
  const onForward = (signal: NodeJS.Signals) => agent.forward(signal);
  for (const signal of STOP_SIGNALS) process.on(signal, onStop);
  if (options.command.length > 0) for (const signal of FORWARDED_SIGNALS) process.on(signal, onForward);
  try {
    return await agent.run();
  } finally {
    for (const signal of STOP_SIGNALS) process.off(signal, onStop);
    for (const signal of FORWARDED_SIGNALS) process.off(signal, onForward);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2), process.env);
} catch (err) {
  log(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
}
