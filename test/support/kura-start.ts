/**
 * Runs `kura start` as a person at a terminal does — in a process group of its own, with a Temporal
 * dev server of its own on a free port, in a kura home of the test's own — and watches what it
 * prints, the dev server it started and the ports it used.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { inject } from 'vitest';
import { hospitalPreset, renderConfigYaml, type HospitalPresetOptions } from '../../src/lab/preset';
import { freePort } from '../../src/stack/devserver';

const ROOT = path.resolve(__dirname, '..', '..');
const KURA = path.join(ROOT, 'bin', 'kura');

/** A kura home: a directory with kura.yaml (the hospital preset, datapath on ports the OS picks). */
export interface StartHome {
  dir: string;
  /** Frontend port of the dev server `kura start` runs here; its Web UI is on port + 1000. */
  port: number;
  vms: string[];
}

/** Creates a kura home with a small hospital lab and picks a free port pair for its dev server. */
export async function makeStartHome(opts: HospitalPresetOptions = {}): Promise<StartHome> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kura-stop-'));
  const cfg = hospitalPreset({ vms: 6, cartridgesPerLibrary: 6, cartridgeCapacity: 1024 * 1024 * 1024, ...opts });
  // Port 0: the OS picks, so parallel test files never fight over the NBD and control ports.
  cfg.datapath = { nbdPort: 0, controlPort: 0 };
  writeFileSync(path.join(dir, 'kura.yaml'), renderConfigYaml(cfg));
  return { dir, port: await freePortPair(), vms: (cfg.sites[0]?.vms ?? []).map((v) => v.name) };
}

/** A free port p whose p + 1000 (the dev server's Web UI) is free too. */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p + 1000 <= 65535 && (await portFree(p + 1000))) return p;
  }
  throw new Error('no free port pair for a dev server');
}

/** True when nothing listens on the loopback port (we can bind it). */
export async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Pids of the Temporal dev servers running on this home's SQLite file. */
export function devServerPids(home: StartHome): number[] {
  const db = path.join(home.dir, '.kura', 'temporal', 'temporal.db');
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (argv.includes('start-dev') && argv.includes(db) && !isZombie(Number(name))) pids.push(Number(name));
  }
  return pids;
}

function isZombie(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

/** The process group of a process (field 5 of /proc/<pid>/stat). */
export function processGroupOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses: count from its closing one.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

/** True while a process with this pid exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !isZombie(pid);
}

/** A line of output and the time it arrived. */
export interface Line {
  text: string;
  at: number;
}

/** How a `kura start` ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/** A running `kura start`. */
export interface StartRun {
  pid: number;
  /** Every line printed so far (stdout and stderr, in the order they arrived). */
  lines: Line[];
  text(): string;
  /** Waits for a line matching `re` (also one already printed) and returns its match. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /**
   * Sends the signal to the process alone, or to its whole process group as a terminal's Ctrl-C
   * does; returns when it was sent and how many lines had been printed by then.
   */
  signal(sig: NodeJS.Signals, to: 'group' | 'process'): { at: number; line: number };
  /** Resolves when the process has exited; SIGKILLs its group after `timeoutMs` and says so. */
  exit(timeoutMs?: number): Promise<Exit>;
}

const started: ChildProcess[] = [];

/**
 * Starts `bin/kura start` in the home, in a process group of its own (as a shell starts a
 * foreground job), against a dev server of its own on the home's port.
 */
export function startKura(home: StartHome, args: string[] = [], env: Record<string, string> = {}): StartRun {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  // The test run's own server must not be taken for the one `kura start` should start.
  for (const k of Object.keys(childEnv)) if (k.startsWith('TEMPORAL_')) delete childEnv[k];
  Object.assign(childEnv, {
    KURA_CONFIG: '',
    KURA_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
    ...env,
  });
  const child = spawn(KURA, ['start', '--temporal-port', String(home.port), '--concurrency', '6', ...args], {
    cwd: home.dir,
    env: childEnv,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  const lines: Line[] = [];
  const waiters = new Set<() => void>();
  const partial = { out: '', err: '' };
  const feed = (which: 'out' | 'err') => (d: Buffer) => {
    const parts = (partial[which] + d.toString()).split('\n');
    partial[which] = parts.pop() ?? '';
    for (const text of parts) lines.push({ text, at: Date.now() });
    for (const w of waiters) w();
  };
  child.stdout!.on('data', feed('out'));
  child.stderr!.on('data', feed('err'));
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => {
      for (const which of ['out', 'err'] as const)
        if (partial[which]) lines.push({ text: partial[which], at: Date.now() });
      resolve({ code, signal, at: Date.now() });
    }),
  );
  let done = false;
  void exited.then(() => {
    done = true;
    for (const w of waiters) w();
  });
  const pid = child.pid!;
  const text = () => lines.map((l) => l.text).join('\n');

  return {
    pid,
    lines,
    text,
    waitFor(re, timeoutMs = 90_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (const l of lines) {
            const m = re.exec(l.text);
            if (m) return finish(() => resolve(m));
          }
          if (done) finish(() => reject(new Error(`kura start exited before printing ${re}:\n${text()}`)));
        };
        const timer = setTimeout(
          () => finish(() => reject(new Error(`no line ${re} within ${timeoutMs / 1000} s:\n${text()}`))),
          timeoutMs,
        );
        const finish = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
    signal(sig, to) {
      const line = lines.length;
      process.kill(to === 'group' ? -pid : pid, sig);
      return { at: Date.now(), line };
    },
    async exit(timeoutMs = 60_000) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
      const r = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (r !== 'late') return r;
      killGroup(pid);
      const e = await exited;
      throw new Error(
        `kura start was still running ${timeoutMs / 1000} s later (killed):\n${text()}\n(exit ${e.code})`,
      );
    },
  };
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Kills whatever a test left running: every `kura start` group and the home's dev servers. */
export function killLeftovers(home: StartHome | undefined): void {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) killGroup(c.pid!);
  if (home) for (const pid of devServerPids(home)) process.kill(pid, 'SIGKILL');
}

/** Runs another `kura` command in the home (e.g. `lab fault add`) and returns its exit code and output. */
export function kuraIn(home: StartHome, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(KURA, args, { cwd: home.dir, env: { ...process.env, KURA_CONFIG: '' }, timeout: 60_000 }, (err, o, e) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${o}${e}` }),
    );
  });
}

/** Index of the first line matching `re`, or -1. */
export function indexOf(lines: Line[], re: RegExp): number {
  return lines.findIndex((l) => re.test(l.text));
}

/** Index of the last line matching `re`, or -1. */
export function lastIndexOf(lines: Line[], re: RegExp): number {
  for (let i = lines.length - 1; i >= 0; i--) if (re.test(lines[i]!.text)) return i;
  return -1;
}
