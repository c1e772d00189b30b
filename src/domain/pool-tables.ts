/**
 * The resource pool's bookkeeping (seed 004, tables 420–470, steps 1020–1070 and 1180–1190) as
 * pure, deterministic functions over plain JSON tables, shared by the pool workflow and its tests.
 */
import type { Site } from './inventory';
import type {
  DeviceRow,
  Grant,
  Holder,
  MarkRequest,
  PoolTables,
  ReserveRequestParsed,
  Stream,
  UnavailableBlock,
} from './pool';

/** Room a cartridge needs beyond the data itself: labels, filemarks and the on-tape catalog (step 1170). */
export const TAPE_OVERHEAD_BYTES = 64 * 1024;

/**
 * Upper bound on candidate streams tried while searching for N disjoint ones. Real sites have a
 * handful of servers and libraries, so the search ends long before; the bound keeps a pathological
 * inventory from stalling a workflow task.
 */
const SEARCH_BUDGET = 20_000;

/** The keys of {@link PoolTables} that hold device rows, in the order the seed's figures show them. */
export const TABLE_KEYS = ['servers', 'libraries', 'drives', 'tapes', 'switches', 'copyDevices'] as const;
export type TableKey = (typeof TABLE_KEYS)[number];

/** Result of {@link allocate}: a grant and the new tables, or what was lacking, in an operator's words. */
export type AllocateResult = { ok: true; grant: Grant; tables: PoolTables } | { ok: false; missing: string };

/** Result of {@link mark}: the new tables and the changed row, or why nothing changed. */
export type MarkResult = { ok: true; tables: PoolTables; row: DeviceRow } | { ok: false; error: string };

/** Builds fresh tables from a site of the inventory; rows are numbered from 0 in inventory order. */
export function tablesFromSite(site: Site): PoolTables {
  const row = (
    number: number,
    name: string,
    kind: DeviceRow['kind'],
    capacity: number,
    extra: Partial<DeviceRow> = {},
  ): DeviceRow => ({
    number,
    name,
    kind,
    state: 'available',
    capacity,
    holders: [],
    ...extra,
  });
  const drives: DeviceRow[] = [];
  const tapes: DeviceRow[] = [];
  for (const lib of site.libraries) {
    for (const d of lib.drives) drives.push(row(drives.length, d.id, 'drive', 1, { library: lib.name }));
    for (const c of lib.cartridges)
      tapes.push(row(tapes.length, c.id, 'tape', 1, { library: lib.name, capacityBytes: c.capacity, usedBytes: 0 }));
  }
  return {
    site: site.name,
    servers: site.servers.map((s, i) => row(i, s.name, 'server', s.capacity)),
    // A library carries as many streams as it has drives; its state follows its drives' holders.
    libraries: site.libraries.map((l, i) => row(i, l.name, 'library', l.drives.length)),
    drives,
    tapes,
    switches: site.switches.map((s, i) => row(i, s.name, 'switch', s.capacity)),
    // Only a device unable to carry a direct stream says so: the rows of capable ones stay as they were.
    copyDevices: site.copyDevices.map((c, i) =>
      row(i, c.name, 'copy-device', c.capacity, c.segmentCopy ? {} : { segmentCopy: false }),
    ),
    links: site.links.map(([a, b]) => [a, b] as [string, string]),
  };
}

/**
 * Folds a fresh reading of the inventory into the live tables: devices that still exist keep their
 * state, holders, reason and recorded tape usage (capacities and library come from the inventory);
 * new devices are added; removed devices are dropped only when nobody holds them, so a running job
 * never loses a device under its feet.
 */
export function mergeInventory(current: PoolTables, fresh: PoolTables): PoolTables {
  const merged = copyTables(fresh);
  merged.site = current.site;
  for (const key of TABLE_KEYS) {
    const old = byName(current[key]);
    const rows = fresh[key].map((f) => {
      const prior = old[f.name];
      if (!prior || prior.kind !== f.kind) return copyRow(f);
      return derive({
        ...copyRow(f),
        state: prior.state === 'unavailable' ? 'unavailable' : 'available',
        holders: prior.holders.map((h) => ({ ...h })),
        reason: prior.reason,
        usedBytes: prior.usedBytes ?? f.usedBytes,
      });
    });
    const kept = new Set(rows.map((r) => r.name));
    for (const prior of current[key]) {
      if (!kept.has(prior.name) && prior.holders.length > 0) rows.push({ ...copyRow(prior), number: rows.length });
    }
    merged[key] = rows;
  }
  return merged;
}

/**
 * Grants `req.streams` disjoint streams to `req.job`, all or nothing (steps 1020–1070). A stream is
 * a backup server, a library with one free drive and one cartridge with room, and the switches of
 * the shortest paths array → server → library (server → library when the request names no array). A job that already holds devices gets its grant
 * back and the tables stay as they are, so a retried request never takes a second set.
 */
export function allocate(tables: PoolTables, req: ReserveRequestParsed): AllocateResult {
  const existing = grantFor(tables, req.job);
  if (existing) return { ok: true, grant: existing, tables };

  if (req.tape !== undefined && req.streams > 1) {
    return {
      ok: false,
      missing: `cartridge ${req.tape} can be in only one stream, but ${req.streams} streams were asked for; ask for 1 stream when naming a cartridge`,
    };
  }
  if (req.tape !== undefined && !tables.tapes.some((t) => t.name === req.tape)) {
    return { ok: false, missing: `no cartridge ${req.tape} in the pool of site ${tables.site}` };
  }
  const graph = adjacency(tables.links);
  if (req.array !== undefined && !graph[req.array]) {
    return {
      ok: false,
      missing: `storage array ${req.array} is not cabled to anything in site ${tables.site}; add its links to the inventory`,
    };
  }

  const ctx: SearchContext = { tables, req, graph, budget: SEARCH_BUDGET, best: [] };
  const found = search(ctx, []);
  if (!found) {
    const why = explain(ctx, ctx.best);
    const prefix =
      req.streams === 1 ? 'no stream can be formed' : `only ${ctx.best.length} of ${req.streams} streams can be formed`;
    return { ok: false, missing: `${prefix}: ${why}` };
  }

  const next = copyTables(tables);
  const rows = byName(allRows(next));
  assignCopyDevices(ctx, found);
  found.forEach((c, stream) => {
    const holder: Holder = { job: req.job, stream };
    for (const name of [c.server, c.library, c.drive, c.tape, ...c.switches, ...(c.copyDevice ? [c.copyDevice] : [])]) {
      const row = rows[name];
      if (row) row.holders.push({ ...holder });
    }
  });
  for (const key of TABLE_KEYS) next[key] = next[key].map(derive);
  const grant = grantFor(next, req.job);
  // The search just placed holders for every stream, so the grant exists; the guard keeps the types honest.
  if (!grant) return { ok: false, missing: `internal: the grant of ${req.job} could not be read back` };
  return { ok: true, grant, tables: next };
}

/**
 * Whether the request could be granted on this site at all, with every device free and available.
 * A request that fails here (too many streams for the cabling, a cartridge too small) will not be
 * helped by waiting, so the pool refuses it at once instead of letting it block the queue.
 */
export function couldEverAllocate(tables: PoolTables, req: ReserveRequestParsed): AllocateResult {
  // A cartridge an operator (or a fault) marked unavailable stays so however long one waits,
  // unless the request asked to wait for it.
  const named = req.tape === undefined ? undefined : tables.tapes.find((t) => t.name === req.tape);
  if (named?.state === 'unavailable' && req.waitForUnavailable !== true) {
    return {
      ok: false,
      missing: `cartridge ${named.name} is unavailable: ${named.reason ?? 'no reason given'}; mark it available with \`kura pool mark ${named.name} available\` once it is fixed`,
    };
  }
  const idle = copyTables(tables);
  for (const key of TABLE_KEYS)
    idle[key] = idle[key].map((r) => ({ ...withoutReason(r), state: 'available', holders: [] }));
  return allocate(idle, req);
}

/**
 * Whether only devices marked unavailable stand between the request and a grant: it cannot be
 * granted even once every job has released what it holds, but could be with some of those devices
 * back. Returns the fewest such devices (any one of several, when one alone would do), or
 * undefined when waiting for busy devices may help, or when nothing would (see couldEverAllocate).
 */
export function blockedByUnavailable(tables: PoolTables, req: ReserveRequestParsed): UnavailableBlock | undefined {
  const down = allRows(tables).filter((r) => r.state === 'unavailable');
  if (down.length === 0) return undefined;
  /** Every holder gone; the devices in `back` available again, the other unavailable ones still not. */
  const fitsWith = (back: Set<string>) => {
    const idle = copyTables(tables);
    for (const key of TABLE_KEYS)
      idle[key] = idle[key].map((r) =>
        r.state === 'unavailable' && !back.has(r.name)
          ? { ...r, holders: [] }
          : { ...withoutReason(r), state: 'available', holders: [] },
      );
    return allocate(idle, req).ok;
  };
  if (fitsWith(new Set())) return undefined;
  const all = new Set(down.map((r) => r.name));
  if (!fitsWith(all)) return undefined;
  const asDown = (r: DeviceRow) => ({ name: r.name, reason: r.reason ?? 'no reason given' });
  const alone = down.filter((r) => fitsWith(new Set([r.name])));
  if (alone.length > 0) return { unavailable: alone.map(asDown), anyOne: alone.length > 1 };
  // No single device will do: keep only those without which it would not fit.
  const needed = new Set(all);
  for (const r of down) {
    needed.delete(r.name);
    if (!fitsWith(needed)) needed.add(r.name);
  }
  return { unavailable: down.filter((r) => needed.has(r.name)).map(asDown), anyOne: false };
}

/** "fcsw-01 is unavailable: head failure", for each device, as a person reads it. */
export function describeUnavailable(block: UnavailableBlock): string {
  return block.unavailable.map((d) => `${d.name} is unavailable: ${d.reason}`).join('; ');
}

/** How to bring the devices back: the `kura pool mark … available` command of each. */
export function bringBackHint(block: UnavailableBlock): string {
  const commands = block.unavailable.map((d) => `\`kura pool mark ${d.name} available\``);
  if (commands.length === 1) return `mark it available with ${commands[0]} once it is fixed`;
  if (block.anyOne) return `mark one of them available (${commands.join(' or ')}) once it is fixed`;
  return `mark them available (${commands.join(' and ')}) once they are fixed`;
}

/** Why the request fails at once: what it needs, the unavailable devices, and how to bring them back. */
export function unavailableMessage(req: ReserveRequestParsed, block: UnavailableBlock): string {
  const what =
    req.tape !== undefined
      ? `cartridge ${req.tape} cannot be had`
      : `the ${req.streams === 1 ? 'stream' : `${req.streams} streams`} asked for cannot be formed from storage array ${req.array}`;
  return `${what}: ${describeUnavailable(block)}, and waiting for busy devices would not help; ${bringBackHint(block)}`;
}

/**
 * Frees every device the job holds (steps 1180/1190) and records each cartridge's end of data from
 * `tapeUsage`, so the room left is known to the next request. `released` counts the holdings freed
 * (one per device per stream); releasing again frees nothing and returns 0.
 */
export function release(
  tables: PoolTables,
  job: string,
  tapeUsage: Record<string, number>,
): { tables: PoolTables; released: number } {
  const next = copyTables(tables);
  let released = 0;
  for (const key of TABLE_KEYS) {
    next[key] = next[key].map((row) => {
      const holders = row.holders.filter((h) => h.job !== job);
      released += row.holders.length - holders.length;
      const used = key === 'tapes' ? tapeUsage[row.name] : undefined;
      return derive({ ...row, holders, ...(used === undefined ? {} : { usedBytes: used }) });
    });
  }
  return { tables: next, released };
}

/**
 * Marks a device available or unavailable. Unavailable keeps its holders (the jobs using it find out
 * through their own failures and release it) but nothing new is granted on it; available clears the
 * reason. An unknown device is reported as an error value, because the signal that carries the
 * request cannot fail.
 */
export function mark(tables: PoolTables, req: MarkRequest): MarkResult {
  const found = locate(tables, req.device);
  if (!found) return { ok: false, error: `no device ${req.device} in the pool of site ${tables.site}` };
  const next = copyTables(tables);
  const old = next[found.key][found.index] as DeviceRow;
  const row: DeviceRow =
    req.state === 'unavailable'
      ? { ...old, state: 'unavailable', reason: req.reason ?? 'marked unavailable (no reason given)' }
      : derive({ ...withoutReason(old), state: 'available' });
  next[found.key][found.index] = row;
  return { ok: true, tables: next, row };
}

/** The grant a job holds, rebuilt from the tables' holders; undefined when it holds nothing. */
export function grantFor(tables: PoolTables, job: string): Grant | undefined {
  const numbers = [
    ...new Set(tables.drives.flatMap((d) => d.holders.filter((h) => h.job === job).map((h) => h.stream))),
  ].sort((a, b) => a - b);
  if (numbers.length === 0) return undefined;
  const holds = (row: DeviceRow, stream: number) => row.holders.some((h) => h.job === job && h.stream === stream);
  const graph = adjacency(tables.links);
  const streams: Stream[] = [];
  for (const stream of numbers) {
    const drive = tables.drives.find((d) => holds(d, stream));
    const server = tables.servers.find((s) => holds(s, stream));
    const tape = tables.tapes.find((t) => holds(t, stream));
    const library = drive?.library;
    if (!drive || !server || !tape || library === undefined) continue;
    const switches = orderSwitches(
      graph,
      tables.switches.filter((s) => holds(s, stream)).map((s) => s.name),
      server.name,
      library,
    );
    const copyDevice = tables.copyDevices.find((c) => holds(c, stream));
    streams.push({
      stream,
      server: server.name,
      library,
      drive: drive.name,
      tape: tape.name,
      switches,
      ...(copyDevice ? { copyDevice: copyDevice.name } : {}),
    });
  }
  return { job, streams };
}

/** Finds a device by name in any table. */
export function findDevice(tables: PoolTables, name: string): DeviceRow | undefined {
  const found = locate(tables, name);
  return found ? tables[found.key][found.index] : undefined;
}

/** One line for the Temporal UI and logs, e.g. "4 of 6 drives in use, 1 device unavailable". */
export function summarize(tables: PoolTables): string {
  const busy = tables.drives.filter((d) => d.holders.length > 0).length;
  const down = allRows(tables).filter((r) => r.state === 'unavailable').length;
  const jobs = new Set(allRows(tables).flatMap((r) => r.holders.map((h) => h.job))).size;
  return `${busy} of ${tables.drives.length} drives in use by ${jobs} job${jobs === 1 ? '' : 's'}, ${down} device${down === 1 ? '' : 's'} unavailable`;
}

// ---------------------------------------------------------------------------------------------
// The search for disjoint streams.

interface Candidate {
  server: string;
  library: string;
  drive: string;
  tape: string;
  switches: string[];
  /** The copy device of a direct stream, chosen once the streams are found. */
  copyDevice?: string;
}

interface SearchContext {
  tables: PoolTables;
  req: ReserveRequestParsed;
  graph: Record<string, string[]>;
  budget: number;
  /** The longest partial set of streams seen, for explaining a failure. */
  best: Candidate[];
}

/**
 * Depth-first search with backtracking: the shortest candidate for stream k is tried first, and a
 * different one only when the remaining streams cannot be formed after it.
 */
function search(ctx: SearchContext, chosen: Candidate[]): Candidate[] | undefined {
  if (chosen.length > ctx.best.length) ctx.best = chosen;
  if (chosen.length === ctx.req.streams) return chosen;
  for (const c of candidates(ctx, chosen)) {
    if (ctx.budget-- <= 0) return undefined;
    const done = search(ctx, [...chosen, c]);
    if (done) return done;
  }
  return undefined;
}

/** Names already used by the streams chosen so far: the streams of one request share nothing. */
function takenBy(chosen: Candidate[]): Set<string> {
  return new Set(
    chosen.flatMap((c) => [
      c.server,
      c.library,
      c.drive,
      c.tape,
      ...c.switches,
      ...(c.copyDevice ? [c.copyDevice] : []),
    ]),
  );
}

/**
 * Gives the first `req.direct` streams a copy device each, where one can carry them: able to run
 * segment commands, available with room, not in another stream of the request, and cabled to the
 * array and to the stream's library through switches the stream holds or may take. A stream left
 * without one stays LAN-free: direct is a preference the devices grant, never a reason to refuse
 * (docs/adr/029). The switches the copy device's legs cross join the stream.
 */
function assignCopyDevices(ctx: SearchContext, found: Candidate[]): void {
  const { tables, req, graph } = ctx;
  const wanted = Math.min(req.direct, found.length);
  if (wanted === 0 || req.array === undefined) return;
  const array = req.array;
  for (let i = 0; i < wanted; i++) {
    const stream = found[i] as Candidate;
    const others = takenBy(found.filter((_, j) => j !== i));
    const switchOk = (name: string) => {
      if (stream.switches.includes(name)) return true;
      const row = tables.switches.find((s) => s.name === name);
      return row !== undefined && usable(row, others);
    };
    for (const device of tables.copyDevices) {
      if (device.segmentCopy === false || !usable(device, others)) continue;
      const fromArray = shortestPath(graph, array, device.name, switchOk);
      const toLibrary = fromArray && shortestPath(graph, device.name, stream.library, switchOk);
      if (!fromArray || !toLibrary) continue;
      stream.copyDevice = device.name;
      stream.switches = [...new Set([...stream.switches, ...fromArray, ...toLibrary])];
      break;
    }
  }
}

const hasRoom = (row: DeviceRow) => row.capacity - row.holders.length > 0;
const usable = (row: DeviceRow, taken: Set<string>) =>
  row.state !== 'unavailable' && hasRoom(row) && !taken.has(row.name);

/** Every stream that could be added next, shortest path first, then in inventory order. */
function candidates(ctx: SearchContext, chosen: Candidate[]): Candidate[] {
  const { tables, req, graph } = ctx;
  const taken = takenBy(chosen);
  const switchOk = (name: string) => {
    const row = tables.switches.find((s) => s.name === name);
    return row !== undefined && usable(row, taken);
  };
  const out: Candidate[] = [];
  for (const lib of tables.libraries) {
    const media = pickMedia(tables, req, lib, taken);
    if (!media) continue;
    for (const server of tables.servers) {
      if (!usable(server, taken) || !admitted(req, server.name)) continue;
      // Without an array the data goes no further than the server: only its leg to the library counts.
      const toServer = req.array === undefined ? [] : shortestPath(graph, req.array, server.name, switchOk);
      if (!toServer) continue;
      const toLibrary = shortestPath(graph, server.name, lib.name, switchOk);
      if (!toLibrary) continue;
      const switches = [...new Set([...toServer, ...toLibrary])];
      out.push({ server: server.name, library: lib.name, drive: media.drive, tape: media.tape, switches });
    }
  }
  // Stable sort: equal lengths keep inventory order (libraries, then servers).
  return out.sort((a, b) => a.switches.length - b.switches.length);
}

/** Whether the request lets this backup server carry a stream (LUN masks and companies, seed 003). */
function admitted(req: ReserveRequestParsed, server: string): boolean {
  return req.servers === undefined || req.servers.includes(server);
}

/** The first free drive and cartridge of a library for this request, or undefined. */
function pickMedia(
  tables: PoolTables,
  req: ReserveRequestParsed,
  lib: DeviceRow,
  taken: Set<string>,
): { drive: string; tape: string } | undefined {
  if (!usable(lib, taken)) return undefined;
  const tape = tables.tapes.find((t) => t.library === lib.name && tapeFits(t, req, taken));
  if (!tape) return undefined;
  const drive = tables.drives.find((d) => d.library === lib.name && usable(d, taken));
  if (!drive) return undefined;
  return { drive: drive.name, tape: tape.name };
}

/**
 * A restore names its cartridge and only reads it, so room does not matter there; a backup needs
 * the bytes it will write plus the overhead.
 */
function tapeFits(t: DeviceRow, req: ReserveRequestParsed, taken: Set<string>): boolean {
  if (!usable(t, taken)) return false;
  if (req.tape !== undefined) return t.name === req.tape;
  return roomOf(t) >= req.bytes + TAPE_OVERHEAD_BYTES;
}

const roomOf = (t: DeviceRow) => (t.capacityBytes ?? 0) - (t.usedBytes ?? 0);

/**
 * Breadth-first search from `from` to `to` whose intermediate hops are switches accepted by
 * `switchOk` (links are undirected; a direct link needs no switch). Returns the switches crossed.
 */
function shortestPath(
  graph: Record<string, string[]>,
  from: string,
  to: string,
  switchOk: (name: string) => boolean,
): string[] | undefined {
  const previous: Record<string, string> = {};
  const seen = new Set([from]);
  let frontier = [from];
  while (frontier.length > 0) {
    const nextFrontier: string[] = [];
    for (const node of frontier) {
      for (const n of graph[node] ?? []) {
        if (n === to) {
          const path: string[] = [];
          for (let at = node; at !== from; at = previous[at] as string) path.unshift(at);
          return path;
        }
        if (seen.has(n) || !switchOk(n)) continue;
        seen.add(n);
        previous[n] = node;
        nextFrontier.push(n);
      }
    }
    frontier = nextFrontier;
  }
  return undefined;
}

/**
 * Orders a stream's switches from the storage array towards the library: the ones on the server →
 * library leg last, in path order; the rest (the array → server leg) before them, farthest from the
 * server first.
 */
function orderSwitches(graph: Record<string, string[]>, held: string[], server: string, library: string): string[] {
  if (held.length <= 1) return held;
  const inSet = (n: string) => held.includes(n);
  const toLibrary = shortestPath(graph, server, library, inSet) ?? [];
  const distance: Record<string, number> = {};
  let frontier = [server];
  for (let d = 1; frontier.length > 0; d++) {
    const next: string[] = [];
    for (const node of frontier) {
      for (const n of graph[node] ?? []) {
        if (!inSet(n) || distance[n] !== undefined) continue;
        distance[n] = d;
        next.push(n);
      }
    }
    frontier = next;
  }
  const arraySide = held.filter((n) => !toLibrary.includes(n)).sort((a, b) => (distance[b] ?? 0) - (distance[a] ?? 0));
  return [...arraySide, ...toLibrary];
}

// ---------------------------------------------------------------------------------------------
// Explaining a failure in words an operator acts on.

/** Why the stream after `chosen` cannot be formed: what is lacking, device by device. */
function explain(ctx: SearchContext, chosen: Candidate[]): string {
  const { tables, req } = ctx;
  const taken = takenBy(chosen);
  const streamOf = (name: string) =>
    chosen.findIndex((c) => [c.server, c.library, c.drive, c.tape, ...c.switches].includes(name));
  const why = (row: DeviceRow): string => {
    if (taken.has(row.name)) return `${row.name} is already in stream ${streamOf(row.name)} of this request`;
    return `${row.name} ${busy(row)}`;
  };

  const parts: string[] = [];
  const allowed = tables.servers.filter((s) => admitted(req, s.name));
  const servers = allowed.filter((s) => usable(s, taken));
  if (allowed.length === 0)
    parts.push(`none of the backup servers the request admits (${req.servers?.join(', ') ?? ''}) is in the pool`);
  else if (servers.length === 0) parts.push(`no backup server has a free stream (${allowed.map(why).join('; ')})`);

  const libs =
    req.tape !== undefined
      ? tables.libraries.filter((l) => l.name === tables.tapes.find((t) => t.name === req.tape)?.library)
      : tables.libraries;
  const libReasons: string[] = [];
  let usableLibs = 0;
  for (const lib of libs) {
    if (!usable(lib, taken) && (taken.has(lib.name) || lib.state === 'unavailable')) {
      libReasons.push(why(lib));
      continue;
    }
    const drives = tables.drives.filter((d) => d.library === lib.name);
    const tapes = tables.tapes.filter((t) => t.library === lib.name);
    const noDrive = !drives.some((d) => usable(d, taken));
    const noTape = !tapes.some((t) => tapeFits(t, req, taken));
    if (noDrive) libReasons.push(`${lib.name} has no free drive (${drives.map(why).join('; ')})`);
    if (noTape) libReasons.push(tapeReason(lib, tapes, req, taken, why));
    if (!noDrive && !noTape) usableLibs++;
  }
  if (usableLibs === 0) parts.push(libReasons.join('; '));

  if (parts.length === 0) {
    const blocked = tables.switches.filter((s) => !usable(s, taken)).map(why);
    const from = req.array === undefined ? '' : `storage array ${req.array} to `;
    parts.push(
      `no path of usable FC switches joins ${from}a free backup server (${servers.map((s) => s.name).join(', ')}) and on to a library with a free drive and cartridge` +
        (blocked.length > 0 ? ` (${blocked.join('; ')})` : ''),
    );
  }
  return parts.join('; ');
}

function tapeReason(
  lib: DeviceRow,
  tapes: DeviceRow[],
  req: ReserveRequestParsed,
  taken: Set<string>,
  why: (row: DeviceRow) => string,
): string {
  if (req.tape !== undefined) {
    const t = tapes.find((x) => x.name === req.tape);
    return t ? `cartridge ${why(t)}` : `no cartridge ${req.tape} in ${lib.name}`;
  }
  if (tapes.length === 0) return `${lib.name} has no cartridges`;
  const need = req.bytes + TAPE_OVERHEAD_BYTES;
  const each = tapes.map((t) => {
    if (taken.has(t.name) || t.state === 'unavailable' || !hasRoom(t)) return why(t);
    return `${t.name} has ${roomOf(t)} bytes free`;
  });
  return `${lib.name} has no cartridge with room for ${need} bytes (${each.join('; ')})`;
}

/** "unavailable: head failure", "held by job X stream 0", "at capacity 2 (jobs a, b)". */
function busy(row: DeviceRow): string {
  if (row.state === 'unavailable') return `unavailable: ${row.reason ?? 'no reason given'}`;
  const who = row.holders.map((h) => `${h.job} stream ${h.stream}`);
  if (row.capacity === 1 && who.length === 1) return `held by job ${who[0]}`;
  if (who.length >= row.capacity) return `at capacity ${row.capacity} (held by ${who.join(', ')})`;
  return `has ${row.capacity - who.length} of ${row.capacity} streams free`;
}

// ---------------------------------------------------------------------------------------------
// Plain-data helpers: the tables cross the durable boundary, so they stay JSON (no Map/Set kept).

function derive(row: DeviceRow): DeviceRow {
  if (row.state === 'unavailable') return row;
  return { ...row, state: row.holders.length > 0 ? 'in-use' : 'available' };
}

function withoutReason(row: DeviceRow): DeviceRow {
  const { reason: _reason, ...rest } = row;
  return rest;
}

function copyRow(row: DeviceRow): DeviceRow {
  return { ...row, holders: row.holders.map((h) => ({ ...h })) };
}

function copyTables(t: PoolTables): PoolTables {
  return {
    site: t.site,
    servers: t.servers.map(copyRow),
    libraries: t.libraries.map(copyRow),
    drives: t.drives.map(copyRow),
    tapes: t.tapes.map(copyRow),
    switches: t.switches.map(copyRow),
    copyDevices: t.copyDevices.map(copyRow),
    links: t.links.map(([a, b]) => [a, b] as [string, string]),
  };
}

function allRows(t: PoolTables): DeviceRow[] {
  return TABLE_KEYS.flatMap((k) => t[k]);
}

function byName(rows: DeviceRow[]): Record<string, DeviceRow> {
  const out: Record<string, DeviceRow> = {};
  for (const r of rows) out[r.name] = r;
  return out;
}

function locate(tables: PoolTables, name: string): { key: TableKey; index: number } | undefined {
  for (const key of TABLE_KEYS) {
    const index = tables[key].findIndex((r) => r.name === name);
    if (index >= 0) return { key, index };
  }
  return undefined;
}

function adjacency(links: PoolTables['links']): Record<string, string[]> {
  const graph: Record<string, string[]> = {};
  for (const [a, b] of links) {
    (graph[a] ??= []).push(b);
    (graph[b] ??= []).push(a);
  }
  return graph;
}
