/**
 * The `server` section of kura.yaml: how the embedded Temporal dev server that `kura start` runs
 * bounds its memory — the history service's cache of workflows (docs/adr/052).
 */
import { z } from 'zod';

/** The Temporal CLI's own bound for its dev server (`history.hostLevelCacheMaxSize`). */
export const CLI_HISTORY_CACHE = 8096;

/**
 * The fewest workflows the cache may hold: every workflow the server is working on at one moment is
 * pinned in it, and a cache full of pinned workflows refuses the next one (ResourceExhausted).
 */
export const MIN_HISTORY_CACHE = 64;

/** The most: Temporal's own default for a production history host. */
export const MAX_HISTORY_CACHE = 128_000;

/** Kura's choice (docs/adr/052): the soak's server stays flat, the benchmarks see no difference. */
export const DEFAULT_HISTORY_CACHE = 512;

const range = `a whole number of workflows from ${MIN_HISTORY_CACHE} to ${MAX_HISTORY_CACHE}`;

export const ServerConfigSchema = z.strictObject({
  /**
   * Workflows whose state the server's history service keeps in memory (`history.hostLevelCacheMaxSize`),
   * closed ones included, for up to an hour; one that has left it is read back from the database on
   * its next task. The CLI's 8,096 let the soak's server grow by about 225 MiB an hour; 512 kept it flat.
   */
  historyCacheSize: z
    .number({ error: `server.historyCacheSize must be ${range}` })
    .int({ error: `server.historyCacheSize must be ${range}, not a fraction` })
    .min(MIN_HISTORY_CACHE, {
      error: `server.historyCacheSize must be ${range}: below ${MIN_HISTORY_CACHE} the workflows in flight can fill it and the server refuses work; raise it or leave it out for ${DEFAULT_HISTORY_CACHE}`,
    })
    .max(MAX_HISTORY_CACHE, {
      error: `server.historyCacheSize must be ${range}; lower it (the CLI's own is ${CLI_HISTORY_CACHE}) or leave it out for ${DEFAULT_HISTORY_CACHE}`,
    })
    .default(DEFAULT_HISTORY_CACHE),
});
export type ServerConfig = z.infer<typeof ServerConfigSchema>;
