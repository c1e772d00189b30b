/**
 * The datapath's metrics, in a prom-client registry of its own (the datapath is a service of its
 * own): the latency and bytes of the host's NBD requests as the NBD server serves them, and, read
 * from each volume at scrape time, its phase, journal, snapshot and what is not yet reflected.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DatapathPhase } from '../domain/datapath';
import type { NbdRequestDone } from '../datapath/nbd-server';
import { Cmd } from '../datapath/protocol';
import type { Volume } from '../datapath/volume';

/** NBD command → the `op` label. */
const OPS = new Map<number, string>([
  [Cmd.Read, 'read'],
  [Cmd.Write, 'write'],
  [Cmd.WriteZeroes, 'write-zeroes'],
  [Cmd.Flush, 'flush'],
  [Cmd.Trim, 'trim'],
  [Cmd.Cache, 'cache'],
]);

/** Latency buckets, seconds: from a cached read (tens of µs) to a write held by a throttle or a quiesce. */
const IO_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The registry and metrics of one datapath service. */
export class DatapathMetrics {
  readonly registry = new Registry();

  private readonly ioSeconds = new Histogram({
    name: 'kura_datapath_io_seconds',
    help: "Time from an NBD request's arrival to its reply being ready, by volume and operation",
    labelNames: ['volume', 'op'] as const,
    buckets: IO_BUCKETS,
    registers: [this.registry],
  });
  private readonly ioBytes = new Counter({
    name: 'kura_datapath_io_bytes_total',
    help: 'Bytes the host read and wrote through the datapath (successful requests), by volume and operation',
    labelNames: ['volume', 'op'] as const,
    registers: [this.registry],
  });
  private readonly ioErrors = new Counter({
    name: 'kura_datapath_io_errors_total',
    help: 'NBD requests answered with an error, by volume and operation',
    labelNames: ['volume', 'op'] as const,
    registers: [this.registry],
  });

  /** `volumes`: the service's volumes, read at every scrape. */
  constructor(volumes: Map<string, Volume>) {
    collectDefaultMetrics({ register: this.registry });
    // A volume for which `read` has no figure (yet) has no series, rather than a NaN.
    const perVolume = (name: string, help: string, read: (v: Volume) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['volume'] as const,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const v of volumes.values()) {
            const value = read(v);
            if (value !== undefined) this.set({ volume: v.name }, value);
          }
        },
      });
    perVolume(
      'kura_datapath_journal_bytes',
      "Bytes of the volume's journal file: every write since the switch, and up to 1 MiB of zeroes written ahead (0 in passthrough)",
      (v) => v.journalBytes,
    );
    perVolume('kura_datapath_journal_entries', 'Records in the journal', (v) => v.status().journalEntries);
    perVolume('kura_datapath_snapshot_bytes', 'Bytes held in the snapshot map', (v) => v.status().snapshotBytes);
    perVolume(
      'kura_datapath_unreflected_bytes',
      'Bytes of the snapshot not yet written to main storage',
      (v) => v.status().unreflectedBytes,
    );
    perVolume(
      'kura_datapath_base_copied_bytes',
      "Bytes of the frozen main storage copied to backup storage in this backup's base copy",
      (v) => v.status().baseCopiedBytes,
    );
    perVolume(
      'kura_datapath_last_quiesce_seconds',
      'How long host commands were held at the last switch back (no series before the first)',
      (v) => {
        const ms = v.status().lastQuiesceMs;
        return ms === null ? undefined : ms / 1000;
      },
    );
    new Gauge({
      name: 'kura_datapath_phase',
      help: 'The phase each volume is in (1 for the current phase, 0 for the others)',
      labelNames: ['volume', 'phase'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const v of volumes.values()) {
          const now = v.status().phase;
          for (const phase of Object.values(DatapathPhase)) this.set({ volume: v.name, phase }, phase === now ? 1 : 0);
        }
      },
    });
  }

  /** Counts one served NBD request (the NBD server's `onRequest`). */
  readonly onRequest = (r: NbdRequestDone): void => {
    const labels = { volume: r.volume, op: OPS.get(r.type) ?? `cmd-${r.type}` };
    this.ioSeconds.observe(labels, r.seconds);
    if (!r.ok) this.ioErrors.inc(labels);
    else if (r.type === Cmd.Read || r.type === Cmd.Write) this.ioBytes.inc(labels, r.length);
  };
}
