/**
 * Per-volume performance from the datapath's counters (seed 003's management functions: IOPS and
 * read/write ratio per volume): two readings of its Prometheus exposition, some time apart, give the
 * rates; the byte totals are the counters themselves.
 */

/** The datapath's counters of one volume at one instant. */
export interface VolumeCounters {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
}

/** What `kura san show --perf` shows per volume. */
export interface VolumePerf extends VolumeCounters {
  volume: string;
  /** Read and write requests per second over the interval. */
  iops: number;
  /** Reads ÷ (reads + writes) over the interval; null when there was no I/O. */
  readRatio: number | null;
  intervalMs: number;
}

const SAMPLE = /^(kura_datapath_io_seconds_count|kura_datapath_io_bytes_total)\{([^}]*)\}\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Reads the per-volume request and byte counters out of the datapath's Prometheus text. */
export function parseDatapathCounters(text: string): Map<string, VolumeCounters> {
  const out = new Map<string, VolumeCounters>();
  for (const line of text.split('\n')) {
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels = new Map([...(m[2] ?? '').matchAll(LABEL)].map((l) => [l[1] ?? '', l[2] ?? '']));
    const volume = labels.get('volume');
    const op = labels.get('op');
    const value = Number(m[3]);
    if (volume === undefined || (op !== 'read' && op !== 'write') || !Number.isFinite(value)) continue;
    const c = out.get(volume) ?? { reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0 };
    if (m[1] === 'kura_datapath_io_seconds_count') c[op === 'read' ? 'reads' : 'writes'] = value;
    else c[op === 'read' ? 'bytesRead' : 'bytesWritten'] = value;
    out.set(volume, c);
  }
  return out;
}

/** The performance of each volume between two readings `intervalMs` apart. */
export function volumePerf(
  before: Map<string, VolumeCounters>,
  after: Map<string, VolumeCounters>,
  intervalMs: number,
): VolumePerf[] {
  const zero: VolumeCounters = { reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0 };
  return [...after.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([volume, now]) => {
      const then = before.get(volume) ?? zero;
      const reads = Math.max(0, now.reads - then.reads);
      const writes = Math.max(0, now.writes - then.writes);
      return {
        volume,
        ...now,
        iops: intervalMs > 0 ? ((reads + writes) * 1000) / intervalMs : 0,
        readRatio: reads + writes === 0 ? null : reads / (reads + writes),
        intervalMs,
      };
    });
}
