/**
 * PostgreSQL 15 with its data directory on ext4 on a qemu-storage-daemon volume, as a host runs it:
 * the volume attached to the host as a FUSE file, a loop device on it, ext4 mounted; WAL archived
 * outside the volume; pgbench writing in the background; and a restored volume started again from
 * the backup label (recovery from the archived WAL) and checked. Shared by the end-to-end test and
 * the split bench, so it imports no test runner. Every process is stopped by its pid, every mount
 * unmounted and every loop device detached by whoever started them, through the `stop`s returned.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, promises as fs, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { QsdArray } from '../../src/drivers/qsd/array';
import type { BackupModeRecord } from '../../src/domain/jobs';
import { BIN, PG_PASSWORD, startServer, type TestServer } from './postgres';

const run = promisify(execFile);

/** The size of the volumes PostgreSQL lives on in these tests: room for initdb, pgbench -s 1 and its WAL. */
export const PG_VOLUME_BYTES = 128 * 1024 * 1024;

/** A file system of a volume, mounted on the host through a loop device. */
export interface MountedVolume {
  volume: string;
  loop: string;
  dir: string;
  /** Unmounts, detaches the loop device and the host's attachment of the volume. */
  unmount(): Promise<void>;
}

/** The uid and gid of the `postgres` user, who must own a data directory. */
async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const [{ stdout: u }, { stdout: g }] = await Promise.all([
    run('id', ['-u', 'postgres']),
    run('id', ['-g', 'postgres']),
  ]);
  return { uid: Number(u.trim()), gid: Number(g.trim()) };
}

/** A fresh directory owned by `postgres` (sockets, logs, the WAL archive). */
export async function postgresDir(prefix: string): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  const { uid, gid } = await postgresIds();
  chownSync(dir, uid, gid);
  return dir;
}

/**
 * Attaches the volume to this host (a FUSE file served by a host-side daemon over NBD), sets up a
 * loop device on it and mounts its ext4 at `dir`; `mkfs` makes the file system first.
 */
export async function mountVolume(array: QsdArray, volume: string, dir: string, mkfs = false): Promise<MountedVolume> {
  const file = await array.attachHost(volume);
  let loop: string | undefined;
  try {
    if (mkfs) await run('mkfs.ext4', ['-q', '-F', file]);
    loop = (await run('losetup', ['--find', '--show', file])).stdout.trim();
    await fs.mkdir(dir, { recursive: true });
    await run('mount', [loop, dir]);
  } catch (err) {
    if (loop) await run('losetup', ['-d', loop]).catch(() => undefined);
    await array.detachHost(volume);
    throw err;
  }
  const device = loop;
  return {
    volume,
    loop: device,
    dir,
    async unmount() {
      await run('umount', [dir]);
      await run('losetup', ['-d', device]).catch(() => undefined);
      await array.detachHost(volume);
    },
  };
}

/** A PostgreSQL cluster on a volume, archiving its WAL to `archive`. */
export interface PgOnVolume {
  server: TestServer;
  mount: MountedVolume;
  /** The data directory, on the volume. */
  data: string;
  /** Socket directory and logs (off the volume). */
  sockDir: string;
  /** Where the server archives its WAL segments (off the volume). */
  archive: string;
  /** Stops the server by its pid and unmounts the volume; the directories off the volume are removed. */
  stop(): Promise<void>;
}

/**
 * initdb (as `postgres`, 1 MiB WAL segments so the archive keeps up) on a new ext4 of the volume, then
 * starts the server with fsync on and every completed WAL segment archived (written aside and
 * renamed, so a reader never sees half a segment), on `port`.
 */
export async function startPgOnVolume(array: QsdArray, volume: string, opts: { port: number }): Promise<PgOnVolume> {
  const sockDir = await postgresDir('kpq-');
  const archive = await postgresDir('kpq-wal-');
  const mount = await mountVolume(array, volume, path.join(sockDir, 'mnt'), true);
  const { uid, gid } = await postgresIds();
  const data = path.join(mount.dir, 'data');
  let server: TestServer | undefined;
  try {
    chownSync(mount.dir, uid, gid);
    const pwfile = path.join(sockDir, 'pw');
    await fs.writeFile(pwfile, `${PG_PASSWORD}\n`);
    chownSync(pwfile, uid, gid);
    await run('runuser', [
      '-u',
      'postgres',
      '--',
      path.join(BIN, 'initdb'),
      '-D',
      data,
      '-U',
      'postgres',
      `--pwfile=${pwfile}`,
      '--auth-host=scram-sha-256',
      '--auth-local=trust',
      '--wal-segsize=1',
    ]);
    await fs.appendFile(
      path.join(data, 'postgresql.conf'),
      [
        '',
        'archive_mode = on',
        `archive_command = 'cp %p ${archive}/%f.part && mv ${archive}/%f.part ${archive}/%f'`,
        'max_wal_size = 32MB',
        'min_wal_size = 8MB',
        '',
      ].join('\n'),
    );
    server = await startServer(data, sockDir, { port: opts.port, fsync: true });
  } catch (err) {
    await mount.unmount().catch(() => undefined);
    throw err;
  }
  const started = server;
  return {
    server: started,
    mount,
    data,
    sockDir,
    archive,
    async stop() {
      await started.stop();
      await mount.unmount();
      rmSync(sockDir, { recursive: true, force: true });
      rmSync(archive, { recursive: true, force: true });
    },
  };
}

/** pgbench's tables at scale `scale` (pgbench -i, no vacuum). */
export async function pgbenchInit(pg: PgOnVolume, scale = 1): Promise<void> {
  await run(path.join(BIN, 'pgbench'), ['-i', '-q', '-s', String(scale), ...pgbenchConn(pg)], { timeout: 120_000 });
}

function pgbenchConn(pg: Pick<PgOnVolume, 'sockDir' | 'server'>): string[] {
  return ['-h', pg.sockDir, '-p', String(pg.server.port), '-U', 'postgres', 'postgres'];
}

/** A pgbench run in the background, until stopped. */
export interface PgbenchRun {
  pid: number;
  /** Stops it by its pid (SIGINT) and returns what it printed. */
  stop(): Promise<string>;
}

/**
 * Starts pgbench's TPC-B-like run with `clients` clients for at most `seconds`, without vacuuming or
 * truncating pgbench_history first (-n), so every transaction since pgbench -i stays in the history.
 */
export function startPgbench(pg: PgOnVolume, opts: { clients?: number; seconds?: number } = {}): PgbenchRun {
  const child: ChildProcess = spawn(
    path.join(BIN, 'pgbench'),
    ['-n', '-c', String(opts.clients ?? 2), '-j', '1', '-T', String(opts.seconds ?? 600), ...pgbenchConn(pg)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.pid === undefined) throw new Error(`pgbench did not start: ${out}`);
  const pid = child.pid;
  return {
    pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGINT');
      await exited;
      return out;
    },
  };
}

/** Transactions per second pgbench reaches in `seconds` (a short run of its own, no vacuum). */
export async function pgbenchTps(pg: PgOnVolume, seconds: number, clients = 2): Promise<number> {
  const { stdout } = await run(
    path.join(BIN, 'pgbench'),
    ['-n', '-c', String(clients), '-j', '1', '-T', String(seconds), ...pgbenchConn(pg)],
    { timeout: (seconds + 60) * 1000 },
  );
  const m = /tps = ([\d.]+)/.exec(stdout);
  if (!m) throw new Error(`pgbench printed no tps:\n${stdout}`);
  return Number(m[1]);
}

/** The four sums of pgbench's invariant: each balance column's total, and the history's deltas. */
export interface PgbenchSums {
  accounts: number;
  tellers: number;
  branches: number;
  history: number;
  transactions: number;
}

export async function pgbenchSums(server: TestServer): Promise<PgbenchSums> {
  const [row] = await server.query<{ a: string; t: string; b: string; h: string; n: string }>(
    `SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::text AS a,
            (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::text AS t,
            (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::text AS b,
            (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::text AS h,
            (SELECT count(*) FROM pgbench_history)::text AS n`,
  );
  return {
    accounts: Number(row!.a),
    tellers: Number(row!.t),
    branches: Number(row!.b),
    history: Number(row!.h),
    transactions: Number(row!.n),
  };
}

/** Copies the archived WAL segments there are now (whole ones only) into `dest`: the WAL stored with an image. */
export async function keepWal(archive: string, dest: string): Promise<string[]> {
  await fs.mkdir(dest, { recursive: true });
  const kept: string[] = [];
  for (const name of (await fs.readdir(archive)).sort()) {
    if (name.endsWith('.part')) continue;
    await fs.copyFile(path.join(archive, name), path.join(dest, name));
    kept.push(name);
  }
  const { uid, gid } = await postgresIds();
  for (const name of ['', ...kept]) chownSync(path.join(dest, name), uid, gid);
  return kept;
}

/** A cluster started from a restored volume. */
export interface RecoveredPg {
  server: TestServer;
  mount: MountedVolume;
  sockDir: string;
  /** The server's log: how recovery went. */
  log(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts PostgreSQL on a restored volume the way ADR 023 says a restored copy starts: the backup
 * label (and tablespace map, when there is one) the hook's pg_backup_stop returned written into the
 * data directory, recovery from the WAL stored with the image (`wal`) up to the point where the
 * backup is consistent, then a new timeline. Returns once the server has promoted.
 */
export async function startRecovered(
  array: QsdArray,
  volume: string,
  mode: BackupModeRecord,
  wal: string,
): Promise<RecoveredPg> {
  if (!mode.label) throw new Error(`the backup of ${volume} carries no backup label`);
  const sockDir = await postgresDir('kpr-');
  const mount = await mountVolume(array, volume, path.join(sockDir, 'mnt'));
  const data = path.join(mount.dir, 'data');
  const { uid, gid } = await postgresIds();
  const write = async (name: string, text: string) => {
    await fs.writeFile(path.join(data, name), text);
    chownSync(path.join(data, name), uid, gid);
  };
  let server: TestServer | undefined;
  try {
    // The image was taken from a running server: its pid file is stale.
    await fs.rm(path.join(data, 'postmaster.pid'), { force: true });
    await write('backup_label', mode.label);
    if (mode.tablespaceMap) await write('tablespace_map', mode.tablespaceMap);
    await write('recovery.signal', '');
    await fs.appendFile(
      path.join(data, 'postgresql.auto.conf'),
      [
        '',
        `restore_command = 'cp ${wal}/%f %p'`,
        "recovery_target = 'immediate'",
        "recovery_target_action = 'promote'",
        // A copy must not archive into the original's archive.
        'archive_mode = off',
        '',
      ].join('\n'),
    );
    server = await startServer(data, sockDir, { fsync: true });
  } catch (err) {
    // The server's log says why recovery failed; it goes with the directory.
    const logs = (await fs.readdir(sockDir)).filter((f) => f.endsWith('.log'));
    const text = (await Promise.all(logs.map((f) => fs.readFile(path.join(sockDir, f), 'utf8')))).join('\n');
    await mount.unmount().catch(() => undefined);
    rmSync(sockDir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start on restored volume ${volume}: ${String(err)}\n${text}`);
  }
  const started = server;
  // A hot standby accepts connections while it recovers: the copy is ready once it has promoted.
  const deadline = Date.now() + 120_000;
  while ((await started.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r !== false) {
    if (Date.now() > deadline) {
      await started.stop();
      await mount.unmount().catch(() => undefined);
      throw new Error(`PostgreSQL on restored volume ${volume} did not finish recovery within 120 s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    server: started,
    mount,
    sockDir,
    log: () => fs.readFile(started.logFile, 'utf8'),
    async stop() {
      await started.stop();
      await mount.unmount();
      rmSync(sockDir, { recursive: true, force: true });
    },
  };
}

/** pg_amcheck over every table and index of the database (amcheck installed where missing); its output. */
export async function pgAmcheck(server: TestServer, sockDir: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      path.join(BIN, 'pg_amcheck'),
      [
        '--install-missing',
        '--heapallindexed',
        '-h',
        sockDir,
        '-p',
        String(server.port),
        '-U',
        'postgres',
        '-d',
        'postgres',
      ],
      { timeout: 300_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
  });
}

/**
 * The name of the WAL segment (timeline 1, `segmentBytes` per segment) that holds the byte before
 * `lsn`: the last segment a backup ending at `lsn` needs.
 */
export function walSegmentOf(lsn: string, segmentBytes = 1024 * 1024): string {
  const [hi, lo] = lsn.split('/').map((x) => BigInt(`0x${x}`));
  const segno = ((hi! << 32n) + lo! - 1n) / BigInt(segmentBytes);
  const perId = 0x100000000n / BigInt(segmentBytes);
  const hex = (n: bigint) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(1n)}${hex(segno / perId)}${hex(segno % perId)}`;
}
