/**
 * Starts, finds and stops the one qemu-storage-daemon of an array: QMP on a Unix socket under the
 * array's directory, a pid file beside it, stop by that pid, start again when it died.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DeviceFaultError } from '../../domain/errors';
import { QmpClient } from './qmp';

/** Where one array's daemon keeps its files. */
export interface QsdArrayPaths {
  /** The array's directory (volumes/, pool/, snapshots/, hosts/, state.json, the daemon's log). */
  dir: string;
  socket: string;
  nbdSocket: string;
  pidFile: string;
  logFile: string;
  stateFile: string;
  volumesDir: string;
  poolDir: string;
  snapshotsDir: string;
  hostsDir: string;
}

/** The paths of an array whose directory is `dir`, with the sockets kura.yaml may move elsewhere. */
export function qsdArrayPaths(dir: string, sockets: { socket?: string; nbdSocket?: string } = {}): QsdArrayPaths {
  return {
    dir,
    socket: sockets.socket ?? path.join(dir, 'qmp.sock'),
    nbdSocket: sockets.nbdSocket ?? path.join(dir, 'nbd.sock'),
    pidFile: path.join(dir, 'qsd.pid'),
    logFile: path.join(dir, 'qsd.log'),
    stateFile: path.join(dir, 'state.json'),
    volumesDir: path.join(dir, 'volumes'),
    poolDir: path.join(dir, 'pool'),
    snapshotsDir: path.join(dir, 'snapshots'),
    hostsDir: path.join(dir, 'hosts'),
  };
}

export const QSD_BINARY = 'qemu-storage-daemon';

/** The pid in `pidFile` when that process is alive and is a qemu-storage-daemon serving `socket`. */
export async function livePid(pidFile: string, socket: string): Promise<number | undefined> {
  const text = await fs.readFile(pidFile, 'utf8').catch(() => undefined);
  const pid = Number(text?.trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  // A pid file outlives its process, and the pid may since name another program: check both.
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (cmdline === undefined || !cmdline.includes(QSD_BINARY) || !cmdline.includes(socket)) return undefined;
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (/^\d+ \(.*\) Z/.test(stat)) return undefined;
  return pid;
}

/** Waits until the process `pid` is gone, up to `timeoutMs`; whether it went. */
export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined || /^\d+ \(.*\) Z/.test(stat)) return true;
    await sleep(50);
  }
  return false;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The supervisor of one array's daemon. `device` names the array in errors (`site/array`). */
export class QsdSupervisor {
  constructor(
    readonly device: string,
    readonly paths: QsdArrayPaths,
    private readonly binary = process.env.KURA_QSD_BIN ?? QSD_BINARY,
  ) {}

  /** The daemon's pid when it runs. */
  pid(): Promise<number | undefined> {
    return livePid(this.paths.pidFile, this.paths.socket);
  }

  /**
   * Makes sure the daemon runs, starting it when it does not (never started, stopped, or killed);
   * says whether it started one. A fresh daemon holds no block nodes: the caller sets it up.
   */
  async ensureRunning(): Promise<{ pid: number; started: boolean }> {
    const pid = await this.pid();
    if (pid !== undefined) return { pid, started: false };
    // Two workers may find the daemon gone at once; only one may start it, or the second would
    // take the first one's socket away.
    const release = await this.lockStart();
    try {
      const now = await this.pid();
      if (now !== undefined) return { pid: now, started: false };
      return { pid: await this.start(), started: true };
    } finally {
      await release();
    }
  }

  /** Takes the array's start lock (a file holding the holder's pid; a dead holder's lock is taken over). */
  private async lockStart(timeoutMs = 30_000): Promise<() => Promise<void>> {
    const file = path.join(this.paths.dir, 'start.lock');
    await fs.mkdir(this.paths.dir, { recursive: true });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await fs.writeFile(file, String(process.pid), { flag: 'wx' });
        return () => fs.rm(file, { force: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
      if (!Number.isInteger(holder) || holder <= 0 || !isAlive(holder)) {
        await fs.rm(file, { force: true });
        continue;
      }
      if (Date.now() >= deadline)
        throw new DeviceFaultError(
          this.device,
          `${this.device}: process ${holder} has been starting the daemon for ${timeoutMs} ms (${file})`,
        );
      await sleep(100);
    }
  }

  private async start(): Promise<number> {
    await fs.mkdir(this.paths.dir, { recursive: true });
    // A killed daemon leaves its socket behind, and binding over it fails.
    await fs.rm(this.paths.socket, { force: true });
    await fs.rm(this.paths.pidFile, { force: true });
    const log = await fs.open(this.paths.logFile, 'a');
    const args = [
      '--chardev',
      `socket,id=qmp,path=${this.paths.socket},server=on,wait=off`,
      '--monitor',
      'chardev=qmp',
      '--pidfile',
      this.paths.pidFile,
      // Detached from the worker: hosts keep their volumes when a worker stops or dies.
      '--daemonize',
    ];
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn(this.binary, args, { stdio: ['ignore', log.fd, log.fd] });
      child.on('error', (err) =>
        reject(
          new DeviceFaultError(
            this.device,
            `${this.device}: cannot run ${this.binary} (${err.message}); install Debian's qemu-system-common (npm run setup does)`,
            err,
          ),
        ),
      );
      child.on('exit', (c) => resolve(c ?? 1));
    }).finally(() => log.close());
    const pid = await this.pid();
    if (code !== 0 || pid === undefined) {
      const tail = (await fs.readFile(this.paths.logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-5);
      throw new DeviceFaultError(
        this.device,
        `${this.device}: qemu-storage-daemon did not start (exit ${code}); its log ${this.paths.logFile} ends: ${tail.join(' | ')}`,
      );
    }
    // --daemonize returns once the monitor listens; one session proves it answers.
    const qmp = await QmpClient.connect(this.paths.socket, this.device, 10_000);
    await qmp.close();
    return pid;
  }

  /** Stops the daemon by its pid: SIGTERM, then SIGKILL after `graceMs`. Nothing to do when it is not running. */
  async stop(graceMs = 5_000): Promise<void> {
    const pid = await this.pid();
    if (pid === undefined) return;
    process.kill(pid, 'SIGTERM');
    if (!(await waitGone(pid, graceMs))) {
      process.kill(pid, 'SIGKILL');
      await waitGone(pid, 5_000);
    }
    await fs.rm(this.paths.pidFile, { force: true });
    await fs.rm(this.paths.socket, { force: true });
  }
}
