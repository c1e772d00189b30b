/**
 * The `metrics` section of kura.yaml: the loopback ports on which a worker process and the datapath
 * serve Prometheus metrics. Every port is off (0) unless set, so two installations on one machine
 * (or two test runs) never fight over a port nobody asked for.
 */
import { z } from 'zod';

/** A TCP port on 127.0.0.1; 0 (or absent) turns that endpoint off. */
const MetricsPortSchema = z.number().int().min(0).max(65535).default(0);

export const MetricsConfigSchema = z
  .object({
    /** Kura's own metrics of a worker process (`kura worker`, `kura start`): backups, failures, RPO, ladder, pool. */
    workerPort: MetricsPortSchema,
    /** The Temporal SDK's metrics of that process (task slots, poll and schedule latencies …), served by the SDK itself. */
    temporalPort: MetricsPortSchema,
    /** Kura's metrics of the datapath (`kura datapath`, or beside the workers in `kura start`): I/O latency, journal. */
    datapathPort: MetricsPortSchema,
  })
  .superRefine((m, ctx) => {
    // `kura start` serves all three from one process: two endpoints on one port cannot both listen.
    const seen = new Map<number, string>();
    for (const key of ['workerPort', 'temporalPort', 'datapathPort'] as const) {
      const port = m[key];
      if (port === 0) continue;
      const other = seen.get(port);
      if (other) ctx.addIssue({ code: 'custom', path: [key], message: `port ${port} is already ${other}'s` });
      else seen.set(port, key);
    }
  });
export type MetricsConfig = z.infer<typeof MetricsConfigSchema>;
