// The agent's state machine (API.md "Agent"), on the client's Registration, which owns the
// heartbeats and retries. Three owners of time, each stopped on shutdown: the health check's
// polling loop, the registration, and CMD's grace timer. Ordering contract on SIGTERM/SIGINT:
// status "draining", then DELETE, then --drain seconds, then the signal to CMD, so that no client
// is sent to an instance that is already going away.
import type { AgentOptions } from './cli.ts';
import { Command, CommandStartError } from './command.ts';
import { HealthCheck, type CheckResult } from './health-check.ts';
import {
  GatewayRefusedError,
  type DiscoveryClient,
  type InstanceStatus,
  type Registration,
  type RegistrationEvent,
} from '../client/index.ts';
import { Alarm } from '../client/timers.ts';

export interface AgentTiming {
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
  /** How long deregistration may be retried on shutdown before giving up (the TTL then ends it). */
  readonly deregisterDeadlineMs: number;
  /** Failed checks in a row that set the status to `down`. */
  readonly checkFailuresForDown: number;
}

export const DEFAULT_TIMING: AgentTiming = {
  backoffMinMs: 500,
  backoffMaxMs: 5_000,
  deregisterDeadlineMs: 5_000,
  checkFailuresForDown: 3,
};

type ShutdownReason =
  | { readonly kind: 'signal'; readonly signal: NodeJS.Signals }
  | { readonly kind: 'command-exited'; readonly code: number }
  | { readonly kind: 'refused'; readonly error: GatewayRefusedError };

export class Agent {
  readonly #options: AgentOptions;
  readonly #client: DiscoveryClient;
  readonly #log: (line: string) => void;
  readonly #timing: AgentTiming;
  readonly #label: string;

  /** Wakes the wait between deregistration and the signal to CMD (second signal, CMD exit). */
  readonly #drainAlarm = new Alarm();

  #command: Command | undefined;
  #check: HealthCheck | undefined;
  #registration: Registration | undefined;
  #stopping = false;
  #shutdown: ShutdownReason | undefined;
  #onShutdown: ((reason: ShutdownReason) => void) | undefined;

  #checkPassedOnce: boolean;
  #failedChecks = 0;
  #wantedStatus: InstanceStatus = 'up';
  #statusReason = '';

  constructor(options: AgentOptions, client: DiscoveryClient, log: (line: string) => void, timing: AgentTiming = DEFAULT_TIMING) {
    this.#options = options;
    this.#client = client;
    this.#log = log;
    this.#timing = timing;
    this.#label = `${options.service}/${options.id}`;
    this.#checkPassedOnce = options.check === undefined;
  }

  /** Runs until done; resolves with the agent's exit code. */
  async run(): Promise<number> {
    const shutdown = new Promise<ShutdownReason>((resolve) => {
      this.#onShutdown = resolve;
      if (this.#shutdown !== undefined) resolve(this.#shutdown); // a signal came in before run()
    });
    // The client's timers do not keep Node's event loop alive, nor do signal handlers: with no CMD,
    // no check and ttl 0 there would be nothing to wait on, and the process would end (exit 13)
    // while it should hold the registration until SIGTERM/SIGINT and then deregister.
    const keepAlive = setInterval(() => undefined, 2 ** 30);
    try {
      return await this.#run(shutdown);
    } finally {
      clearInterval(keepAlive);
    }
  }

  async #run(shutdown: Promise<ShutdownReason>): Promise<number> {
    if (this.#options.command.length > 0) {
      try {
        this.#command = await Command.start(this.#options.command, this.#log);
      } catch (err) {
        if (!(err instanceof CommandStartError)) throw err;
        this.#log(err.message);
        return 127;
      }
      void this.#command.exit.then((code) => {
        this.#drainAlarm.wake();
        this.#requestShutdown({ kind: 'command-exited', code });
      });
    }

    if (this.#options.check !== undefined) {
      this.#log(`waiting for ${this.#options.check.href} to answer 2xx before registering ${this.#label}`);
      this.#check = new HealthCheck(this.#options.check, (result) => this.#onCheck(result));
      this.#check.start();
    } else {
      this.#register();
    }

    const reason = await shutdown;
    this.#stopping = true;
    await this.#check?.stop();
    return this.#stop(reason);
  }

  /** SIGTERM or SIGINT: drain and stop. A second one skips what is left of the drain wait. */
  signal(signal: NodeJS.Signals): void {
    if (this.#shutdown !== undefined) {
      this.#drainAlarm.wake();
      return;
    }
    this.#log(`received ${signal}`);
    this.#requestShutdown({ kind: 'signal', signal });
  }

  /** SIGHUP, SIGUSR1, SIGUSR2: CMD's business. */
  forward(signal: NodeJS.Signals): void {
    this.#command?.signal(signal);
  }

  #requestShutdown(reason: ShutdownReason): void {
    if (this.#shutdown !== undefined) return;
    this.#shutdown = reason;
    this.#onShutdown?.(reason);
  }

  #onCheck(result: CheckResult): void {
    if (this.#stopping) return;
    if (result.ok) {
      this.#failedChecks = 0;
      if (!this.#checkPassedOnce) {
        this.#checkPassedOnce = true;
        this.#statusReason = `check answered ${result.detail}`;
        this.#register();
      } else if (this.#wantedStatus === 'down') {
        this.#setWantedStatus('up', `check answered ${result.detail}`);
      }
      return;
    }
    this.#failedChecks += 1;
    if (this.#checkPassedOnce && this.#failedChecks === this.#timing.checkFailuresForDown) {
      this.#setWantedStatus('down', `${this.#failedChecks} failed checks in a row, last: ${result.detail}`);
    }
  }

  #setWantedStatus(status: InstanceStatus, reason: string): void {
    this.#wantedStatus = status;
    this.#statusReason = reason;
    this.#registration?.setStatus(status);
  }

  /** Registers (once the check has passed); the registration then heartbeats and re-registers by itself until closed. */
  #register(): void {
    const options = this.#options;
    this.#registration = this.#client.register(
      {
        service: options.service,
        id: options.id,
        address: options.address,
        port: options.port,
        ttl: options.ttl,
        tags: [...options.tags],
        metadata: { ...options.metadata },
        ...(options.weight === undefined ? {} : { weight: options.weight }),
        status: this.#wantedStatus,
      },
      {
        onEvent: (event) => this.#onRegistrationEvent(event),
        backoffMinMs: this.#timing.backoffMinMs,
        backoffMaxMs: this.#timing.backoffMaxMs,
      },
    );
  }

  /** One log line per change of state; a refusal stops the agent. */
  #onRegistrationEvent(event: RegistrationEvent): void {
    switch (event.type) {
      case 'registered': {
        const { ttl: granted, status } = event.instance;
        const ttl = granted === 0 ? 'no TTL' : `ttl ${granted} s`;
        this.#log(
          event.again
            ? `re-registered ${this.#label} (the gateway had lost it; ${ttl}, status ${status})`
            : `registered ${this.#label} at ${displayUrl(this.#options.gateway)} (${ttl}, status ${status})`,
        );
        return;
      }
      case 'status':
        this.#log(`status ${event.from} -> ${event.to} (${this.#stopping ? 'shutting down' : this.#statusReason})`);
        return;
      case 'unreachable': {
        const what =
          event.error instanceof GatewayRefusedError
            ? `gateway error (${event.error.message})`
            : `gateway unreachable (${errorMessage(event.error)})`;
        this.#log(`${what}; retrying with backoff`);
        return;
      }
      case 'reachable':
        this.#log('gateway reachable again');
        return;
      case 'refused':
        this.#log(
          `the gateway refused ${event.during === 'register' ? 'to register' : 'a heartbeat of'} ${this.#label} (${event.error.message}): stopping`,
        );
        this.#requestShutdown({ kind: 'refused', error: event.error });
        return;
      case 'draining-failed':
        this.#log(`could not set status draining (${errorMessage(event.error)}); deregistering anyway`);
        return;
      case 'deregistered':
        if (event.known) this.#log(`deregistered ${this.#label}`);
        else if (!event.inDoubt) this.#log(`deregistered ${this.#label} (the gateway no longer knew it)`);
        return;
      case 'deregister-failed': {
        const expiry = event.ttl === 0 ? 'it has no TTL: delete it by hand' : `it expires within ${event.ttl} s`;
        this.#log(`could not deregister ${this.#label} (${errorMessage(event.error)}); ${expiry}`);
        return;
      }
    }
  }

  /** After the check has ended: deregister, then stop CMD; the exit code. */
  async #stop(reason: ShutdownReason): Promise<number> {
    const command = this.#command;
    if (reason.kind === 'command-exited') this.#log(`CMD exited by itself with ${describeExit(reason.code)}`);
    const deregistered =
      reason.kind !== 'refused' &&
      this.#registration !== undefined &&
      (await this.#registration.close({ drain: reason.kind === 'signal', deadlineMs: this.#timing.deregisterDeadlineMs }));

    if (reason.kind === 'command-exited') return reason.code;
    if (reason.kind === 'refused') {
      if (command !== undefined) await command.stop('SIGTERM', this.#options.grace * 1000);
      return 1;
    }
    if (command === undefined) return 0;

    if (deregistered && this.#options.drain > 0 && command.running) {
      this.#log(`waiting ${this.#options.drain} s for clients to move away before passing ${reason.signal} to CMD`);
      await this.#drainAlarm.wait(this.#options.drain * 1000);
    }
    const code = await command.stop(reason.signal, this.#options.grace * 1000);
    this.#log(`CMD exited with ${describeExit(code)}`);
    return code;
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function describeExit(code: number): string {
  return code > 128 ? `code ${code} (signal ${code - 128})` : `code ${code}`;
}

/** The gateway URL without credentials, for log lines. */
function displayUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}
