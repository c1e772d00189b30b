/**
 * Async remote copy (docs/adr/028): what journaling a group's writes costs the host, and how fast a
 * backlog drains to the remote site.
 *
 * (1) Host writes: the same random 64 KiB writes through the datapath's volume, (a) each made
 *     durable on main storage (FUA) — the baseline — and (b) journaled into the group's journal
 *     (durable before the ack) and written to main storage without FUA. Prints writes/s of each and
 *     b ÷ a (the slowdown; the target is at most 1.5: an acknowledged write costs one durable commit
 *     either way).
 * (2) Drain: a backlog of --size bytes in the journal shipped over the lab WAN (no faults, no
 *     latency) and applied at the remote site, against copying the same bytes file to file and
 *     syncing. Prints MiB/s of each and drain ÷ copy (the target is at least 0.2).
 *
 *   npx tsx bench/remote.ts [--size 32MiB] [--writes 400]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { GroupJournal } from '../src/datapath/group-journal';
import { Volume } from '../src/datapath/volume';
import { DatapathConfigSchema } from '../src/domain/inventory';
import { InvalidInputError } from '../src/domain/errors';
import { formatBytes, parseSize } from '../src/domain/units';
import { Replica } from '../src/remote/replica';
import { Receiver } from '../src/remote/receiver';
import { ship } from '../src/remote/shipper';
import { freePort } from '../src/stack/devserver';
import { printVerdict } from './support/verdict';

const MiB = 1024 * 1024;
const WRITE = 64 * 1024;

function args(): { size: number; writes: number } {
  const argv = process.argv.slice(2);
  const value = (flag: string, dflt: string) => {
    const i = argv.indexOf(flag);
    return i === -1 ? dflt : (argv[i + 1] ?? dflt);
  };
  const size = parseSize(value('--size', '32MiB'));
  if (size === undefined || size < 4 * MiB || size % WRITE !== 0)
    throw new InvalidInputError('--size must be a size of at least 4MiB, a multiple of 64 KiB');
  const writes = Number(value('--writes', '400'));
  if (!Number.isSafeInteger(writes) || writes < 50) throw new InvalidInputError('--writes must be at least 50');
  return { size, writes };
}

async function main(): Promise<void> {
  const { size, writes } = args();
  const dir = await mkdtemp(path.join(tmpdir(), 'kura-bench-remote-'));
  try {
    const settings = DatapathConfigSchema.parse({});
    const payloads = Array.from({ length: 16 }, () => randomBytes(WRITE));
    const slots = size / WRITE;
    const hostWrites = async (v: Volume, fua: boolean): Promise<number> => {
      const t0 = performance.now();
      for (let i = 0; i < writes; i++) await v.write((i % slots) * WRITE, payloads[i % payloads.length]!, fua);
      return writes / ((performance.now() - t0) / 1000);
    };

    // (1) host writes
    await writeFile(path.join(dir, 'a.img'), Buffer.alloc(size));
    await writeFile(path.join(dir, 'b.img'), Buffer.alloc(size));
    const plain = await Volume.open({
      name: 'a/v',
      mainFile: path.join(dir, 'a.img'),
      stateDir: path.join(dir, 'sa'),
      settings,
    });
    const journal = new GroupJournal('bench', path.join(dir, 'journal.db'));
    const journaled = await Volume.open({
      name: 'b/v',
      mainFile: path.join(dir, 'b.img'),
      stateDir: path.join(dir, 'sb'),
      settings,
      onWrite: (offset, length, data) =>
        void (data ? journal.append('b/v', offset, data) : journal.appendZeroes('b/v', offset, length)),
    });
    const fua = await hostWrites(plain, true);
    const withJournal = await hostWrites(journaled, false);
    const slowdown = fua / withJournal;
    console.log(`host writes of ${formatBytes(WRITE)}, ${writes} each:`);
    console.log(`  (a) durable on main storage (FUA)        ${fua.toFixed(0)} writes/s`);
    console.log(`  (b) journaled for remote copy, no FUA    ${withJournal.toFixed(0)} writes/s`);
    console.log(`  slowdown b ÷ a: ${slowdown.toFixed(2)}`);
    await plain.close();
    await journaled.close();
    journal.close();

    // (2) drain a backlog
    const backlogJournal = new GroupJournal('drain', path.join(dir, 'drain.db'));
    for (let off = 0; off < size; off += WRITE) backlogJournal.append('a/v', off, payloads[(off / WRITE) % 16]!);
    const remoteFile = path.join(dir, 'remote.img');
    await writeFile(remoteFile, Buffer.alloc(size));
    const replica = new Replica('drain', path.join(dir, 'replica.db'), { 'a/v': remoteFile });
    const port = await freePort();
    const secret = randomBytes(32);
    const receiver = new Receiver({ replica, secret, port, batch: 64 });
    await receiver.listen();
    const t0 = performance.now();
    const stop = new AbortController();
    const shipping = ship({
      journal: backlogJournal,
      receiverPort: port,
      secret,
      wan: { bandwidth: 0, latency: 0 },
      faultsFile: path.join(dir, 'wan.json'),
      durationMs: 600_000,
      batchEntries: 64,
      resendAfterMs: 2000,
      signal: stop.signal,
    });
    while (backlogJournal.acked < backlogJournal.lastSeq) await new Promise((r) => setTimeout(r, 5));
    const drainS = (performance.now() - t0) / 1000;
    stop.abort();
    await shipping;
    await receiver.close();
    replica.close();
    backlogJournal.close();

    const t1 = performance.now();
    await copyFile(path.join(dir, 'a.img'), path.join(dir, 'copy.img'));
    const fh = await open(path.join(dir, 'copy.img'), 'r+');
    await fh.sync();
    await fh.close();
    const copyS = (performance.now() - t1) / 1000;
    const drainRate = size / MiB / drainS;
    const copyRate = size / MiB / copyS;
    console.log(`drain of a ${formatBytes(size)} backlog (${size / WRITE} writes) to the remote site:`);
    console.log(`  copy file to file + fsync (baseline)     ${copyRate.toFixed(1)} MiB/s`);
    console.log(`  ship over the lab WAN + apply in order   ${drainRate.toFixed(1)} MiB/s`);
    console.log(`  ratio drain ÷ copy: ${(drainRate / copyRate).toFixed(3)}`);

    printVerdict({
      bench: 'remote',
      metric: 'host write, journaled ÷ FUA (slowdown)',
      now: slowdown,
      target: 1.5,
      direction: 'atMost',
      note: `${writes} writes of 64 KiB`,
    });
    printVerdict({
      bench: 'remote',
      metric: 'backlog drain ÷ file copy',
      now: drainRate / copyRate,
      target: 0.2,
      direction: 'atLeast',
      note: `${formatBytes(size)}, batches of 64 writes`,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
