/**
 * The estate report (docs/adr/035): what the catalog, the drills and the stores say about the
 * estate gathered into one value, and that value rendered as a self-contained HTML page with
 * inline SVG plots — protection per class against its RPO (breaches first), the store against the
 * logical data over time, job durations and throughput per night, the drills' recovery times, and
 * the copy's lag.
 */
import type { Catalog } from '../catalog/store';
import type { DrillLog, LagSample } from '../catalog/drills';
import type { LoadedConfig } from '../config/load';
import { ClassName, classVolumes, type ClassName as ClassNameT } from '../domain/classes';
import type { DrillRecord } from '../domain/drill';
import { formatBytes, formatDuration } from '../domain/units';
import type { StoreLag } from '../store/lag';
import { barChart, esc, hbarChart, lineChart } from './svg';

/** One protected target: the age of its newest good backup against the RPO. */
export interface Protection {
  className: ClassNameT;
  site: string;
  target: string;
  lastGood: string | null;
  ageMs: number | null;
  rpoMs: number;
  breach: boolean;
}

/** One night's jobs: how long they ran and how fast. */
export interface Night {
  night: string;
  jobs: number;
  bytes: number;
  /** From the first job's start to the last one's end. */
  wallMs: number;
  longestMs: number;
  throughput: number;
}

/** Everything the page shows, gathered at one instant. */
export interface EstateData {
  at: string;
  installation: string;
  protection: Protection[];
  /** Per night of data: the logical bytes backed up into the store so far, and the bytes it stored. */
  dedup: { at: string; logical: number; stored: number }[];
  nights: Night[];
  drills: DrillRecord[];
  lag: { samples: LagSample[]; now: StoreLag | null };
  /**
   * How the store backups of the newest day of data found their changed chunks (the catalog's
   * `changedFrom`; `unknown` for rows recorded before it was kept); null without store backups.
   */
  changes: { day: string; bitmap: number; digests: number; full: number; unknown: number } | null;
}

const day = (iso: string) => iso.slice(0, 10);
/** The night a job belongs to: the date of its start less twelve hours, so 22:00 and 01:00 are one night. */
const nightOf = (ms: number) => new Date(ms - 12 * 3_600_000).toISOString().slice(0, 10);

/** Gathers the report's data from the catalog and the drill log at `now`. */
export function gatherEstate(deps: {
  loaded: LoadedConfig;
  catalog: Catalog;
  drills: DrillLog;
  lag: StoreLag | null;
  now: number;
}): EstateData {
  const { loaded, catalog, drills, now } = deps;
  const cfg = loaded.config;
  const store = catalog.listStoreBackups();
  const good = store.filter((b) => b.store.verifyStatus !== 'bad');
  const protection: Protection[] = [];
  for (const c of Object.values(ClassName)) {
    const cls = cfg.classes[c];
    if (!cls) continue;
    // A VM is protected as far as its whole image is: the older of its two volumes' newest backups.
    const targets = new Map<string, { site: string; parts: string[] }>();
    for (const v of classVolumes(cfg, c)) {
      const name = c === ClassName.Vm ? v.target.replace(/\/(software|data)$/, '') : v.target;
      const t = targets.get(`${v.site}\u0000${name}`) ?? { site: v.site, parts: [] };
      t.parts.push(v.target);
      targets.set(`${v.site}\u0000${name}`, t);
    }
    for (const [key, t] of targets) {
      const name = key.split('\u0000')[1]!;
      const newest = t.parts.map((p) => good.find((b) => b.site === t.site && b.target === p)?.dataTime ?? null);
      const lastGood = newest.some((x) => x === null) ? null : ([...newest].sort()[0] ?? null);
      const ageMs = lastGood === null ? null : Math.max(0, now - Date.parse(lastGood));
      protection.push({
        className: c,
        site: t.site,
        target: name,
        lastGood,
        ageMs,
        rpoMs: cls.rpo,
        breach: ageMs === null || ageMs > cls.rpo,
      });
    }
  }
  // Breaches first, the worst against its own class's RPO first; then the others by how close they are to theirs.
  protection.sort(
    (a, b) =>
      Number(b.breach) - Number(a.breach) ||
      (b.ageMs ?? Infinity) / b.rpoMs - (a.ageMs ?? Infinity) / a.rpoMs ||
      (a.target < b.target ? -1 : 1),
  );

  const byDay = new Map<string, { logical: number; stored: number }>();
  for (const b of store) {
    const d = byDay.get(day(b.dataTime)) ?? { logical: 0, stored: 0 };
    d.logical += b.sizeBytes;
    d.stored += b.store.storedBytes;
    byDay.set(day(b.dataTime), d);
  }
  let logical = 0;
  let stored = 0;
  const dedup = [...byDay.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([d, v]) => ({ at: `${d}T00:00:00.000Z`, logical: (logical += v.logical), stored: (stored += v.stored) }));

  const perNight = new Map<string, { jobs: number; bytes: number; start: number; end: number; longest: number }>();
  for (const b of catalog.listBackups({ status: 'complete' })) {
    if (b.endedAt === null || b.endedAt === undefined) continue;
    const s = Date.parse(b.startedAt);
    const e = Date.parse(b.endedAt);
    const n = perNight.get(nightOf(s)) ?? { jobs: 0, bytes: 0, start: s, end: e, longest: 0 };
    n.jobs += 1;
    n.bytes += b.sizeBytes;
    n.start = Math.min(n.start, s);
    n.end = Math.max(n.end, e);
    n.longest = Math.max(n.longest, e - s);
    perNight.set(nightOf(s), n);
  }
  const nights = [...perNight.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .slice(-31)
    .map(([night, n]) => {
      const wallMs = Math.max(1, n.end - n.start);
      return {
        night,
        jobs: n.jobs,
        bytes: n.bytes,
        wallMs,
        longestMs: n.longest,
        throughput: n.bytes / (wallMs / 1000),
      };
    });

  const newestDay = store.reduce<string | null>(
    (m, b) => (m === null || day(b.dataTime) > m ? day(b.dataTime) : m),
    null,
  );
  const changes = newestDay === null ? null : { day: newestDay, bitmap: 0, digests: 0, full: 0, unknown: 0 };
  for (const b of store) if (changes && day(b.dataTime) === changes.day) changes[b.store.changedFrom ?? 'unknown'] += 1;

  return {
    at: new Date(now).toISOString(),
    installation: cfg.installation,
    protection,
    dedup,
    nights,
    changes,
    drills: drills.list({ limit: 60 }).reverse(),
    lag: { samples: drills.lagSamples(), now: deps.lag },
  };
}

const fmtBytes = (v: number) => formatBytes(Math.round(v));
const fmtMs = (v: number) => formatDuration(Math.round(v));
const ageText = (p: Protection) =>
  p.ageMs === null ? 'no good backup' : `${fmtMs(p.ageMs)} old${p.breach ? ' — BREACH' : ''}`;

/** Renders the report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched. */
export function renderEstateReport(d: EstateData): string {
  const breaches = d.protection.filter((p) => p.breach).length;
  const protection = hbarChart({
    title: 'Protection per class: age of the last good backup against the RPO',
    bars: d.protection.map((p) => ({
      label: `${p.className} ${p.target}`,
      value: p.ageMs ?? p.rpoMs * 10,
      limit: p.rpoMs,
      note: ageText(p),
    })),
  });
  const last = d.dedup.at(-1);
  const dedup = lineChart({
    title: 'Store size against logical data',
    xs: d.dedup.map((x) => Date.parse(x.at)),
    series: [
      { name: 'logical data backed up', color: '#4a78c2', values: d.dedup.map((x) => x.logical) },
      { name: 'stored in the store', color: '#3f8f5a', values: d.dedup.map((x) => x.stored) },
    ],
    format: fmtBytes,
  });
  const durations = barChart({
    title: 'Job durations per night',
    labels: d.nights.map((n) => n.night.slice(5)),
    series: [
      { name: 'night (first start to last end)', color: '#4a78c2', values: d.nights.map((n) => n.wallMs) },
      { name: 'longest job', color: '#e0a030', values: d.nights.map((n) => n.longestMs) },
    ],
    format: fmtMs,
  });
  const throughput = barChart({
    title: 'Throughput per night',
    labels: d.nights.map((n) => n.night.slice(5)),
    series: [{ name: 'bytes per second of the night', color: '#3f8f5a', values: d.nights.map((n) => n.throughput) }],
    format: (v) => `${fmtBytes(v)}/s`,
  });
  const failedDrills = new Set(d.drills.flatMap((r, i) => (r.outcome === 'failed' ? [i] : [])));
  const drills = barChart({
    title: "Drills' recovery times (red: failed)",
    labels: d.drills.map((r) => r.target),
    series: [{ name: 'request to healthy', color: '#4a78c2', values: d.drills.map((r) => r.rtoMs ?? 0) }],
    format: fmtMs,
    flagged: failedDrills,
  });
  const maxLag = d.lag.now?.maxLagMs ?? d.lag.samples.at(-1)?.maxLagMs;
  const lag = lineChart({
    title: "The copy's lag behind the first store",
    xs: d.lag.samples.map((s) => Date.parse(s.at)),
    series: [{ name: 'lag', color: '#8a4ac2', values: d.lag.samples.map((s) => s.lagMs) }],
    format: fmtMs,
    ...(maxLag === undefined ? {} : { limit: { value: maxLag, label: `policy ${fmtMs(maxLag)}` } }),
  });
  const rows = d.protection
    .map(
      (p) =>
        `<tr class="${p.breach ? 'breach' : ''}"><td>${esc(p.className)}</td><td>${esc(p.target)}</td><td>${esc(p.lastGood ?? '—')}</td><td>${esc(ageText(p))}</td><td>${esc(fmtMs(p.rpoMs))}</td></tr>`,
    )
    .join('\n');
  const drillRows = [...d.drills]
    .reverse()
    .slice(0, 12)
    .map(
      (r) =>
        `<tr class="${r.outcome === 'failed' ? 'breach' : ''}"><td>${esc(r.startedAt.slice(0, 16))}</td><td>${esc(r.className)}</td><td>${esc(r.target)}</td><td>${esc(r.outcome)}</td><td>${r.rtoMs === null ? '—' : esc(fmtMs(r.rtoMs))}</td><td>${esc(r.errorType ? `${r.errorType}: ${r.error ?? ''}` : '')}</td></tr>`,
    )
    .join('\n');
  const lagNow = d.lag.now
    ? `now ${fmtMs(d.lag.now.lagMs)} (${d.lag.now.behind.length} backup(s) behind; last sync ${d.lag.now.lastSyncAt ?? 'never'})${d.lag.now.alert ? ' — past the policy' : ''}`
    : 'not measured';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Kura estate report — ${esc(d.at.slice(0, 10))}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { color: #555; font-size: 13px; }
.kpi { display: inline-block; margin: 10px 18px 0 0; padding: 8px 12px; background: #fff; border: 1px solid #ddd; }
.kpi b { display: block; font-size: 18px; }
.bad b { color: #b02020; }
table { border-collapse: collapse; font-size: 12px; background: #fff; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; white-space: nowrap; }
td:last-child { white-space: normal; }
tr.breach td { background: #fbe4e4; }
svg { display: block; background: #fff; border: 1px solid #ddd; margin: 6px 0; }
</style>
</head>
<body>
<h1>Kura estate report</h1>
<div class="meta">installation ${esc(d.installation)} · written ${esc(d.at)}</div>
<div class="kpi${breaches > 0 ? ' bad' : ''}"><b>${breaches} of ${d.protection.length}</b>targets past their RPO</div>
<div class="kpi"><b>${last && last.stored > 0 ? `${(Math.round((last.logical / last.stored) * 10) / 10).toString()}×` : '—'}</b>dedup ratio (${esc(last ? `${fmtBytes(last.logical)} in ${fmtBytes(last.stored)}` : 'no store backups')})</div>
<div class="kpi${failedDrills.size > 0 ? ' bad' : ''}"><b>${d.drills.length - failedDrills.size} of ${d.drills.length}</b>drilled targets came back healthy</div>
<div class="kpi${d.lag.now?.alert ? ' bad' : ''}"><b>${d.lag.now ? esc(fmtMs(d.lag.now.lagMs)) : '—'}</b>copy lag</div>
<div class="kpi"><b>${d.changes ? `${d.changes.bitmap} of ${d.changes.bitmap + d.changes.digests + d.changes.full + d.changes.unknown}` : '—'}</b>${d.changes ? esc(`store backups of ${d.changes.day} read only their changed chunks (dirty bitmap); ${d.changes.digests} compared digests, ${d.changes.full} full${d.changes.unknown > 0 ? `, ${d.changes.unknown} not recorded` : ''}`) : 'no store backups'}</div>
<h2>Protection per class (breaches first)</h2>
${protection}
<table><tr><th>Class</th><th>Target</th><th>Last good backup</th><th>Age</th><th>RPO</th></tr>
${rows}
</table>
<h2>Store size against logical data (the dedup ratio)</h2>
${dedup}
<h2>Jobs per night</h2>
${durations}
${throughput}
<h2>Restore drills</h2>
${drills}
<table><tr><th>Started</th><th>Class</th><th>Target</th><th>Outcome</th><th>Recovery time</th><th>Reason</th></tr>
${drillRows}
</table>
<h2>The copy in another building</h2>
<div class="meta">${esc(lagNow)}</div>
${lag}
</body>
</html>
`;
}
