/**
 * The store's chunk numbers a set of changed byte ranges touches (a dirty bitmap's extents, at the
 * bitmap's own granularity), so a bitmap incremental reads exactly those chunks (docs/adr/036).
 */

/** Every chunk of `chunkSize` that at least one byte of the extents falls in, below `sizeBytes`. */
export function changedChunks(
  extents: readonly { offset: number; length: number }[],
  chunkSize: number,
  sizeBytes: number,
): Set<number> {
  const out = new Set<number>();
  const count = Math.ceil(sizeBytes / chunkSize);
  for (const e of extents) {
    if (e.length <= 0) continue;
    const first = Math.floor(e.offset / chunkSize);
    const last = Math.min(count - 1, Math.floor((e.offset + e.length - 1) / chunkSize));
    for (let c = first; c <= last; c++) out.add(c);
  }
  return out;
}
