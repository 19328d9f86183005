// The agent's state machine (API.md "Agent"). Three owners of time, each stopped on shutdown:
// the health check's polling loop, the registration session's alarm (heartbeats and retries),
// and CMD's grace timer. Ordering contract on SIGTERM/SIGINT: status "draining", then DELETE,
// then --drain seconds, then the signal to CMD, so that no client is sent to an instance that
// is already going away.
import type { AgentOptions } from './cli.ts';
import { Alarm, Backoff } from './alarm.ts';
import { Command, CommandStartError } from './command.ts';
import { GatewayRefusedError, type GatewayClient, type InstanceStatus } from './gateway-client.ts';
import { HealthCheck, type CheckResult } from './health-check.ts';

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

type GatewayCalls = Pick<GatewayClient, 'register' | 'heartbeat' | 'deregister'>;

type ShutdownReason =
  | { readonly kind: 'signal'; readonly signal: NodeJS.Signals }
  | { readonly kind: 'command-exited'; readonly code: number }
  | { readonly kind: 'refused'; readonly error: GatewayRefusedError };

/** Registration answers that no retry can fix: stop CMD and exit 1. */
const FATAL_REGISTRATION_STATUS = new Set([400, 401, 403]);

export class Agent {
  readonly #options: AgentOptions;
  readonly #gateway: GatewayCalls;
  readonly #log: (line: string) => void;
  readonly #timing: AgentTiming;
  readonly #label: string;

  /** Wakes the session loop: a status change to send, or shutdown. */
  readonly #sessionAlarm = new Alarm();
  /** Wakes the wait between deregistration and the signal to CMD (second signal, CMD exit). */
  readonly #drainAlarm = new Alarm();

  #command: Command | undefined;
  #check: HealthCheck | undefined;
  #stopping = false;
  #shutdown: ShutdownReason | undefined;
  #onShutdown: ((reason: ShutdownReason) => void) | undefined;

  // Registration state, owned by the session loop.
  #checkPassedOnce: boolean;
  #failedChecks = 0;
  #wantedStatus: InstanceStatus = 'up';
  #statusReason = '';
  #registered = false;
  #registeredOnce = false;
  /** A registration got no answer: it may have landed, so shutdown deletes it to be sure. */
  #registrationInDoubt = false;
  #grantedTtl: number;
  #gatewayStatus: InstanceStatus = 'up';
  #gatewayTrouble: string | undefined;

  constructor(options: AgentOptions, gateway: GatewayCalls, log: (line: string) => void, timing: AgentTiming = DEFAULT_TIMING) {
    this.#options = options;
    this.#gateway = gateway;
    this.#log = log;
    this.#timing = timing;
    this.#label = `${options.service}/${options.id}`;
    this.#checkPassedOnce = options.check === undefined;
    this.#grantedTtl = options.ttl;
  }

  /** Runs until done; resolves with the agent's exit code. */
  async run(): Promise<number> {
    const shutdown = new Promise<ShutdownReason>((resolve) => {
      this.#onShutdown = resolve;
      if (this.#shutdown !== undefined) resolve(this.#shutdown); // a signal came in before run()
    });

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
    }
    const session = this.#keepRegistered();

    // Signal handlers do not keep Node's event loop alive: with no CMD, no check and ttl 0 there is
    // nothing else to wait on, and the process would end (exit 13) while it should hold the
    // registration until SIGTERM/SIGINT.
    const keepAlive = setInterval(() => undefined, 2 ** 30);
    const reason = await shutdown;
    clearInterval(keepAlive);
    this.#stopping = true;
    this.#sessionAlarm.wake();
    await Promise.all([this.#check?.stop(), session]);
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
    if (result.ok) {
      this.#failedChecks = 0;
      if (!this.#checkPassedOnce || this.#wantedStatus === 'down') {
        this.#checkPassedOnce = true;
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
    this.#sessionAlarm.wake();
  }

  /** Registers once the check has passed, then heartbeats; re-registers after a 404; until shutdown. */
  async #keepRegistered(): Promise<void> {
    const backoff = new Backoff(this.#timing.backoffMinMs, this.#timing.backoffMaxMs);
    while (!this.#stopping) {
      let nextMs: number;
      if (!this.#checkPassedOnce) {
        nextMs = Infinity; // the check wakes us
      } else if (!this.#registered) {
        nextMs = await this.#register(backoff);
      } else {
        nextMs = await this.#heartbeat(backoff);
      }
      if (this.#stopping) return;
      await this.#sessionAlarm.wait(nextMs);
    }
  }

  /** One registration attempt; answers the delay before the next step. */
  async #register(backoff: Backoff): Promise<number> {
    const options = this.#options;
    try {
      this.#registrationInDoubt = true;
      const instance = await this.#gateway.register(options.service, options.id, {
        address: options.address,
        port: options.port,
        ttl: options.ttl,
        tags: options.tags,
        metadata: options.metadata,
        ...(options.weight === undefined ? {} : { weight: options.weight }),
        status: this.#wantedStatus,
      });
      this.#registrationInDoubt = false;
      this.#registered = true;
      this.#grantedTtl = instance.ttl;
      this.#gatewayStatus = instance.status;
      this.#gatewayIsBack();
      backoff.reset();
      const ttl = instance.ttl === 0 ? 'no TTL' : `ttl ${instance.ttl} s`;
      this.#log(
        this.#registeredOnce
          ? `re-registered ${this.#label} (the gateway had lost it; ${ttl}, status ${instance.status})`
          : `registered ${this.#label} at ${displayUrl(options.gateway)} (${ttl}, status ${instance.status})`,
      );
      this.#registeredOnce = true;
      return this.#heartbeatDelayMs(undefined);
    } catch (err) {
      if (err instanceof GatewayRefusedError) {
        this.#registrationInDoubt = false;
        if (FATAL_REGISTRATION_STATUS.has(err.status)) {
          this.#log(`the gateway refused to register ${this.#label} (${err.message}): stopping`);
          this.#requestShutdown({ kind: 'refused', error: err });
          return Infinity;
        }
      }
      this.#gatewayIsAway(err);
      return backoff.next();
    }
  }

  /** One heartbeat (carrying the status when it changed); answers the delay before the next step. */
  async #heartbeat(backoff: Backoff): Promise<number> {
    const { service, id } = this.#options;
    const change = this.#wantedStatus !== this.#gatewayStatus ? this.#wantedStatus : undefined;
    // A ttl-0 instance never expires: it hears from us only when its status changes.
    if (this.#grantedTtl === 0 && change === undefined) return Infinity;
    try {
      const answer = await this.#gateway.heartbeat(service, id, change);
      this.#gatewayIsBack();
      backoff.reset();
      if (change !== undefined) this.#log(`status ${this.#gatewayStatus} -> ${answer.status} (${this.#statusReason})`);
      this.#gatewayStatus = answer.status;
      if (answer.ttl > 0) this.#grantedTtl = answer.ttl;
      return this.#heartbeatDelayMs(answer.interval);
    } catch (err) {
      if (err instanceof GatewayRefusedError && err.status === 404) {
        this.#registered = false; // expired, or the gateway's store forgot it: register again now
        return 0;
      }
      this.#gatewayIsAway(err);
      return backoff.next();
    }
  }

  #heartbeatDelayMs(intervalSeconds: number | undefined): number {
    if (this.#grantedTtl === 0) return Infinity;
    return (intervalSeconds ?? this.#grantedTtl / 3) * 1000;
  }

  #gatewayIsAway(err: unknown): void {
    const what = err instanceof GatewayRefusedError ? `gateway error (${err.message})` : `gateway unreachable (${errorMessage(err)})`;
    if (this.#gatewayTrouble === undefined) this.#log(`${what}; retrying with backoff`);
    this.#gatewayTrouble = what;
  }

  #gatewayIsBack(): void {
    if (this.#gatewayTrouble !== undefined) this.#log('gateway reachable again');
    this.#gatewayTrouble = undefined;
  }

  /** After the session loop and the check have ended: deregister, then stop CMD; the exit code. */
  async #stop(reason: ShutdownReason): Promise<number> {
    const command = this.#command;
    if (reason.kind === 'command-exited') this.#log(`CMD exited by itself with ${describeExit(reason.code)}`);
    let deregistered = false;
    if (reason.kind !== 'refused' && (this.#registered || this.#registrationInDoubt)) {
      deregistered = await this.#deregister(reason.kind === 'signal' && this.#registered);
    }

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

  /** Status `draining` (when asked), then DELETE, retried until the deadline; true if it was done. */
  async #deregister(drainFirst: boolean): Promise<boolean> {
    const { service, id } = this.#options;
    if (drainFirst && this.#gatewayStatus !== 'draining') {
      try {
        const answer = await this.#gateway.heartbeat(service, id, 'draining');
        this.#log(`status ${this.#gatewayStatus} -> ${answer.status} (shutting down)`);
        this.#gatewayStatus = answer.status;
      } catch (err) {
        this.#log(`could not set status draining (${errorMessage(err)}); deregistering anyway`);
      }
    }

    const deadline = Date.now() + this.#timing.deregisterDeadlineMs;
    const backoff = new Backoff(this.#timing.backoffMinMs, this.#timing.backoffMaxMs);
    const alarm = new Alarm();
    for (;;) {
      try {
        const known = await this.#gateway.deregister(service, id);
        this.#registered = false;
        if (known) this.#log(`deregistered ${this.#label}`);
        else if (!this.#registrationInDoubt) this.#log(`deregistered ${this.#label} (the gateway no longer knew it)`);
        return true;
      } catch (err) {
        const delay = backoff.next();
        const hopeless = err instanceof GatewayRefusedError && err.status < 500 && err.status !== 429;
        if (hopeless || Date.now() + delay > deadline) {
          const expiry = this.#grantedTtl === 0 ? 'it has no TTL: delete it by hand' : `it expires within ${this.#grantedTtl} s`;
          this.#log(`could not deregister ${this.#label} (${errorMessage(err)}); ${expiry}`);
          return false;
        }
        await alarm.wait(delay);
      }
    }
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
