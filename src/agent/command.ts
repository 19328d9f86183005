// CMD: the process the agent wraps. Started with the agent's own stdin, stdout and stderr, in a
// process group of its own, and every signal goes to that group: a shell CMD's children get the
// signal too and cannot outlive it. Stopped with a signal and, after a grace period, SIGKILL;
// whatever is left of the group when CMD has exited gets SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';

/** CMD could not be started (not found, not executable…): the agent exits 127. */
export class CommandStartError extends Error {
  override readonly name = 'CommandStartError';
}

export class Command {
  readonly #child: ChildProcess;
  readonly #log: (line: string) => void;
  #running = true;
  /** CMD's exit code, or 128 + the signal number when a signal ended it. */
  readonly exit: Promise<number>;

  private constructor(child: ChildProcess, log: (line: string) => void) {
    this.#child = child;
    this.#log = log;
    this.exit = new Promise<number>((resolve) => {
      child.once('exit', (code, signal) => {
        this.#running = false;
        this.#signalGroup('SIGKILL'); // CMD's orphans, if any: they must not outlive it
        resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal]));
      });
    });
  }

  /** Resolves once CMD runs; rejects with CommandStartError when it cannot be started. */
  static async start(argv: readonly string[], log: (line: string) => void): Promise<Command> {
    const [file, ...args] = argv;
    if (file === undefined || file === '') throw new CommandStartError('no CMD given');
    // detached: CMD leads a new process group (and session), so kill(-pid) reaches its children.
    const child = spawn(file, args, { stdio: 'inherit', detached: true });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        child.off('spawn', onSpawn);
        reject(new CommandStartError(`cannot start '${file}': ${err.code ?? err.message}`, { cause: err }));
      };
      const onSpawn = () => {
        child.off('error', onError);
        resolve();
      };
      child.once('error', onError);
      child.once('spawn', onSpawn);
    });
    // After a successful spawn, 'error' only reports a failed kill(): nothing to do but say so.
    child.on('error', (err) => log(`CMD: ${err.message}`));
    return new Command(child, log);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Passes a signal on to CMD's process group if CMD still runs. */
  signal(signal: NodeJS.Signals): void {
    if (this.#running) this.#signalGroup(signal);
  }

  #signalGroup(signal: NodeJS.Signals): void {
    const pid = this.#child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch (err) {
      // ESRCH: the group is empty. Anything else (EPERM) is worth a line.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') this.#log(`cannot signal CMD's process group: ${(err as Error).message}`);
    }
  }

  /** Sends `signal`, then SIGKILL after `graceMs`; resolves with CMD's exit code. */
  async stop(signal: NodeJS.Signals, graceMs: number): Promise<number> {
    if (!this.#running) return this.exit;
    this.#log(`passing ${signal} to CMD (pid ${this.#child.pid}); SIGKILL in ${graceMs / 1000} s if it is still running`);
    this.#signalGroup(signal);
    const timer = setTimeout(() => {
      if (!this.#running) return;
      this.#log(`CMD still running ${graceMs / 1000} s after ${signal}: sending SIGKILL`);
      this.#signalGroup('SIGKILL');
    }, graceMs);
    try {
      return await this.exit;
    } finally {
      clearTimeout(timer);
    }
  }
}
