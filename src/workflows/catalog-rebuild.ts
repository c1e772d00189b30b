/**
 * The catalog rebuilt from cartridges (seed 004 step 1170's purpose), reading each cartridge only in
 * a drive the pool granted, as every other job does: the libraries are read at once, each one
 * cartridge at a time. For every cartridge the pool grants a drive of its library, a backup server
 * and the path between; the path is zoned, the cartridge mounted, its catalog blocks read by that
 * server on its own queue, then the cartridge unmounted, the path unzoned and everything released.
 * A cartridge that cannot be had or read is given up and reported by name; the others are read all
 * the same. What the cartridges say is then compared with the catalog and, when asked and every
 * cartridge was read, merged into a rebuilt catalog file.
 */
import {
  isCancellation,
  patched,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { TapeCatalogEntry } from '../domain/catalog';
import {
  CatalogRebuildRequestSchema,
  RebuildPhase,
  type CatalogRebuildProgress,
  type CatalogRebuildReport,
  type CatalogRebuildRequest,
  type LibraryProgress,
} from '../domain/catalog-rebuild';
import type { Stream } from '../domain/pool';
import { catalogRebuildProgressQuery } from '../messages';
import { JobKind, KuraKind, KuraSite } from '../search-attributes';
import { catalogReadActivities, catalogRebuildActivities } from './catalog-rebuild-proxies';
import { Compensations } from './compensations';
import { acceptInput, jobFailure, rootFailure } from './failures';
import { zoneName } from './plan';
import { controlActivities, patientReleaseActivities, poolActivities } from './proxies';
import { label } from './labels';

/**
 * Marks the runs that release a cartridge's devices, after its catalog is read or in the undo of a
 * failure, with bounded patience (`patientReleaseActivities`): after a worker kill the site's pool
 * may not answer for about a minute, longer than the five attempts earlier runs replay with.
 */
const PATIENT_REBUILD_RELEASE_PATCH = 'patient-rebuild-release';

/** One library's cartridges, in the pool's order. */
interface LibraryPass {
  library: string;
  tapes: string[];
}

/** Rebuilds the catalog of one site from its cartridges and compares it with the catalog. */
export async function catalogRebuild(input: CatalogRebuildRequest): Promise<CatalogRebuildReport> {
  const { workflowId } = workflowInfo();
  const startedAt = new Date().toISOString();
  const progress: CatalogRebuildProgress = {
    phase: RebuildPhase.Accept,
    activity: 'accepting the request',
    cartridges: 0,
    cartridgesTotal: 0,
    entries: 0,
    unread: [],
    libraries: [],
    startedAt,
  };
  setHandler(catalogRebuildProgressQuery, () => progress);

  const req = acceptInput(CatalogRebuildRequestSchema, input, 'catalog rebuild request');
  upsertSearchAttributes([
    { key: KuraKind, value: JobKind.CatalogRebuild },
    { key: KuraSite, value: label(req.site) },
  ]);
  const pool = poolActivities(req.tuning);
  // Decided at the first release, once for the run, so every cartridge's release is tried alike.
  let patientRelease: boolean | undefined;
  const release = (): Pick<typeof pool, 'releaseStreams'> =>
    (patientRelease ??= patched(PATIENT_REBUILD_RELEASE_PATCH)) ? patientReleaseActivities(req.tuning, false) : pool;
  const control = controlActivities(req.tuning);
  const rebuild = catalogRebuildActivities(req.tuning);

  // Plan: every cartridge of every library, as the site's pool knows its devices.
  enter(RebuildPhase.Plan, `listing the cartridges of site ${req.site}`);
  const tables = await pool.poolTables(req.site).catch((err) => fail(`catalog rebuild of ${req.site} refused`, err));
  const passes: LibraryPass[] = tables.libraries
    .map((l) => ({ library: l.name, tapes: tables.tapes.filter((t) => t.library === l.name).map((t) => t.name) }))
    .filter((p) => p.tapes.length > 0);
  const order = passes.flatMap((p) => p.tapes);
  progress.cartridgesTotal = order.length;
  progress.libraries = passes.map((p) => ({ library: p.library, done: 0, total: p.tapes.length, state: 'waiting' }));

  // Read: every library at once, each one cartridge at a time.
  enter(RebuildPhase.Read, `reading ${order.length} cartridges in ${passes.length} libraries`);
  const read: Record<string, TapeCatalogEntry[]> = {};
  // allSettled, not all: a cancellation must not end the job while another library still unwinds.
  const lanes = await Promise.allSettled(
    passes.map((p, i) => readLibrary(p, progress.libraries[i] as LibraryProgress)),
  );
  const stopped = lanes.find((l): l is PromiseRejectedResult => l.status === 'rejected');
  if (stopped) throw stopped.reason;
  const entries = order.flatMap((tape) => read[tape] ?? []);
  const unread = [...progress.unread].sort((a, b) => order.indexOf(a.tape) - order.indexOf(b.tape));

  // Compare with the catalog.
  enter(RebuildPhase.Compare, `comparing ${entries.length} catalog entries with the catalog`);
  const compared = await rebuild
    .compareRebuiltCatalog({ site: req.site, entries })
    .catch((err) => fail(`the catalog rebuilt from the cartridges of ${req.site} cannot be compared`, err));

  // Write the rebuilt catalog, only whole.
  let file: string | null = null;
  if (req.out !== undefined && unread.length === 0) {
    enter(RebuildPhase.Write, `writing the rebuilt catalog to ${req.out}`);
    const written = await rebuild
      .writeRebuiltCatalog({ file: req.out, entries })
      .catch((err) => fail(`the rebuilt catalog of ${req.site} cannot be written to ${req.out}`, err));
    file = written.file;
  }

  enter(
    RebuildPhase.Done,
    `read ${progress.cartridges} of ${order.length} cartridges (${entries.length} catalog entries, ${compared.backups} complete backups); ` +
      (unread.length > 0 ? `${unread.length} not read; ` : '') +
      (compared.differences.length === 0
        ? 'equal to the catalog'
        : `${compared.differences.length} difference(s) from the catalog`),
  );
  return {
    workflowId,
    site: req.site,
    cartridges: progress.cartridges,
    cartridgesTotal: order.length,
    entries,
    backups: compared.backups,
    differences: compared.differences,
    unread,
    file,
    startedAt,
    endedAt: new Date().toISOString(),
  };

  /**
   * One library's cartridges in turn. A cartridge that fails is given up and the next one tried;
   * only a cancellation ends the pass early.
   */
  async function readLibrary(pass: LibraryPass, lane: LibraryProgress): Promise<void> {
    for (const tape of pass.tapes) {
      lane.state = 'reading';
      try {
        const found = await readCartridge(tape, lane);
        read[tape] = found;
        progress.cartridges += 1;
        progress.entries += found.length;
      } catch (err) {
        if (isCancellation(err)) throw err;
        const root = rootFailure(err);
        // A library whose drives are out of service costs no wait: the pool refuses at once when only
        // a person can bring the devices back, so each cartridge here waits only for busy ones.
        progress.unread.push({ library: pass.library, tape, type: root.type, message: root.message });
      }
      lane.done += 1;
      delete lane.current;
    }
    lane.state = 'done';
  }

  /**
   * Reads one cartridge in a drive the pool grants; whatever fails, the cartridge is unloaded and
   * the zone and devices released before the error goes on.
   */
  async function readCartridge(tape: string, lane: LibraryProgress): Promise<TapeCatalogEntry[]> {
    const job = `${workflowId}#${tape}`;
    const held = new Compensations();
    try {
      lane.current = `${tape}: waiting for a drive of ${lane.library}`;
      // No array: the cartridge's data goes no further than the backup server that reads it.
      // Registered before the reservation: a cancel that lands while the pool grants would otherwise
      // leave the grant held. Releasing what a job never got is a no-op.
      held.add('release', () => release().releaseStreams(req.site, { job }));
      const grant = await pool.reserveStreams(req.site, { job, streams: 1, tape, waitMs: req.tuning.reserveWaitMs });
      const s = grant.streams[0] as Stream;
      lane.current = `${tape} in ${s.drive}, read by ${s.server}`;
      const zone = zoneName(job, 0);
      await control.zoneStream({
        site: req.site,
        name: zone,
        members: [...new Set([s.server, ...s.switches, s.library])],
      });
      held.add('unzone', () => control.unzoneStream({ site: req.site, name: zone }));
      const addr = { site: req.site, library: s.library, drive: s.drive, tape: s.tape };
      await control.loadTape(addr);
      held.add('unload', () => control.unloadTape(addr));
      const found = await catalogReadActivities(s.server, req.tuning).readTapeCatalog({ ...addr, server: s.server });
      await control.unloadTape(addr);
      held.done('unload');
      await control.unzoneStream({ site: req.site, name: zone });
      held.done('unzone');
      await release().releaseStreams(req.site, { job });
      held.done('release');
      return found;
    } catch (err) {
      await held.unwind();
      throw err;
    }
  }

  function enter(phase: RebuildPhase, activity: string): void {
    progress.phase = phase;
    progress.activity = activity;
    setCurrentDetails(`**${phase}** — ${activity}`);
  }

  /** Ends the job with a typed failure that says where and why; a cancellation stays one. */
  function fail(context: string, err: unknown): never {
    if (isCancellation(err)) throw err;
    progress.error = rootFailure(err).message;
    enter(RebuildPhase.Failed, context);
    setCurrentDetails(`**failed** — ${context}: ${progress.error}`);
    throw jobFailure(context, err);
  }
}
