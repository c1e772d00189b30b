/**
 * Draws the fleet benchmark's curve as plain SVG text: time per VM against the number of VMs, with
 * the target (the smallest size's time × the target ratio) as a dashed line, and the peak RSS and
 * database size of each size beneath. No dependency: the README shows the file as it is.
 */

/** The figures of one estate size that the curve shows. */
export interface CurvePoint {
  vms: number;
  perVm: number;
  workerPeakRss: number;
  serverPeakRss: number;
  dbBytes: number;
  overLimit: boolean;
}

const W = 720;
const H = 420;
const PAD = { left: 70, right: 30, top: 50, bottom: 150 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;

/** A "nice" upper bound for an axis: 1, 2 or 5 × a power of ten, at least `v`. */
function niceCeil(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** The SVG document of the curve. */
export function fleetSvg(
  points: CurvePoint[],
  opts: { target: number; k: number; size: number; date: string; guardians: boolean },
): string {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const base = points[0]?.perVm ?? 0;
  const limit = base * opts.target;
  const maxX = niceCeil(Math.max(...points.map((p) => p.vms), 1));
  const maxY = niceCeil(Math.max(...points.map((p) => p.perVm), limit) * 1.1);
  const x = (v: number) => PAD.left + (v / maxX) * plotW;
  const y = (v: number) => PAD.top + plotH - (v / maxY) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Fleet backup: time per VM by estate size</text>`,
    `<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${esc(`npx tsx bench/fleet.ts, ${opts.date}: ${mib(opts.size)} per VM, ${opts.k} at a time, 2 streams × 10 chunks, ${opts.guardians ? 'a guardian per VM' : 'no VM guardians'}, dev server on SQLite`)}</text>`,
  );
  // Axes and grid.
  for (let i = 0; i <= 5; i++) {
    const v = (maxY / 5) * i;
    out.push(
      `<line x1="${PAD.left}" y1="${y(v).toFixed(1)}" x2="${W - PAD.right}" y2="${y(v).toFixed(1)}" stroke="#e5e5e5"/>`,
      `<text x="${PAD.left - 8}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(2)}</text>`,
    );
  }
  for (let i = 0; i <= 5; i++) {
    const v = (maxX / 5) * i;
    out.push(`<text x="${x(v).toFixed(1)}" y="${PAD.top + plotH + 18}" text-anchor="middle">${v.toFixed(0)}</text>`);
  }
  out.push(
    `<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${PAD.top + plotH}" stroke="#333"/>`,
    `<line x1="${PAD.left}" y1="${PAD.top + plotH}" x2="${W - PAD.right}" y2="${PAD.top + plotH}" stroke="#333"/>`,
    `<text x="${PAD.left + plotW / 2}" y="${PAD.top + plotH + 36}" text-anchor="middle">VMs in the estate (one fleet run)</text>`,
    `<text transform="translate(18 ${PAD.top + plotH / 2}) rotate(-90)" text-anchor="middle">seconds per VM</text>`,
  );
  // The target: the smallest size's time per VM × the target ratio.
  if (limit > 0) {
    out.push(
      `<line x1="${PAD.left}" y1="${y(limit).toFixed(1)}" x2="${W - PAD.right}" y2="${y(limit).toFixed(1)}" stroke="#c0392b" stroke-dasharray="6 4"/>`,
      `<text x="${W - PAD.right - 4}" y="${(y(limit) - 6).toFixed(1)}" text-anchor="end" fill="#c0392b">${esc(`target: ${opts.target} × the time per VM at ${points[0]!.vms}`)}</text>`,
    );
  }
  // The curve and its points.
  const path = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.vms).toFixed(1)} ${y(p.perVm).toFixed(1)}`).join(' ');
  out.push(`<path d="${path}" fill="none" stroke="#2471a3" stroke-width="2"/>`);
  for (const p of points) {
    out.push(
      `<circle cx="${x(p.vms).toFixed(1)}" cy="${y(p.perVm).toFixed(1)}" r="4" fill="${p.overLimit ? '#c0392b' : '#2471a3'}"/>`,
      `<text x="${x(p.vms).toFixed(1)}" y="${(y(p.perVm) - 10).toFixed(1)}" text-anchor="middle">${p.perVm.toFixed(3)} s${p.overLimit ? ' (over limit)' : ''}</text>`,
    );
  }
  // What each size cost in memory and disk.
  const tableY = PAD.top + plotH + 62;
  const cols = [PAD.left, PAD.left + 110, PAD.left + 250, PAD.left + 390, PAD.left + 530];
  const header = ['VMs', 's per VM', 'worker peak RSS', 'server peak RSS', 'server database'];
  out.push(
    ...header.map((h, i) => `<text x="${cols[i]}" y="${tableY}" font-weight="bold">${esc(h)}</text>`),
    ...points.flatMap((p, row) =>
      [String(p.vms), p.perVm.toFixed(3), mib(p.workerPeakRss), mib(p.serverPeakRss), mib(p.dbBytes)].map(
        (v, i) => `<text x="${cols[i]}" y="${tableY + 18 * (row + 1)}">${esc(v)}</text>`,
      ),
    ),
  );
  out.push('</svg>', '');
  return out.join('\n');
}
