/**
 * The glibc malloc settings Kura's long-running Node processes start with (docs/adr/054): two arenas,
 * and a fixed mmap threshold, so buffers of 128 KiB and more are mapped and unmapped on their own
 * instead of being carved out of the arenas, where their freed space stays in the process for good.
 *
 * glibc reads these once, when the process starts, so they must be in a process's environment when it
 * is executed: `bin/kura` sets them before it executes Node (its second line repeats these values, and a
 * test holds the two equal), the Dockerfile sets them for the image, and a script that spawns a worker or
 * a datapath passes {@link withMallocTuning}'s environment.
 */

/** The variables and their values; an operator's own value of any of them wins. */
export const MALLOC_TUNING: Readonly<Record<string, string>> = Object.freeze({
  // One arena per thread that allocates at once, up to 8 per core by default: the SDK's core, libuv's
  // pool and V8's helpers each keep freed space in their own. Two bound that.
  MALLOC_ARENA_MAX: '2',
  // glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), after which
  // 4 MiB chunk buffers come from the arenas and their freed space is rarely returned. Setting the
  // threshold turns that off and keeps the trim threshold at its 128 KiB default.
  MALLOC_MMAP_THRESHOLD_: '131072',
});

/** `env` with each of {@link MALLOC_TUNING}'s variables it does not set already. */
export function withMallocTuning(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const [name, value] of Object.entries(MALLOC_TUNING)) {
    if (out[name] === undefined || out[name] === '') out[name] = value;
  }
  return out;
}
