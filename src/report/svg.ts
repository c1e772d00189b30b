/**
 * Small inline SVG plots for the estate report (docs/adr/035): horizontal bars against a limit,
 * vertical bars per label, and lines over time — strings of well-formed SVG, no dependency, with
 * every text escaped.
 */

/** One bar of a horizontal bar chart: its value against its own limit. */
export interface HBar {
  label: string;
  value: number;
  limit: number;
  /** Text shown at the bar's end. */
  note: string;
}

/** One series of a line or bar chart. */
export interface Series {
  name: string;
  color: string;
  values: number[];
}

const FONT = 'font-family="system-ui, sans-serif" font-size="11"';

/** Escapes text for XML content and attribute values. */
export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const num = (n: number) => (Number.isFinite(n) ? Math.round(n * 10) / 10 : 0);

function frame(width: number, height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}">`,
    `<title>${esc(title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    ...body,
    '</svg>',
  ].join('\n');
}

/**
 * Horizontal bars, one per row in the given order, each as a fraction of its own limit with the
 * limit drawn at the same place for all; a bar past its limit is red.
 */
export function hbarChart(opts: { title: string; bars: HBar[]; width?: number }): string {
  const width = opts.width ?? 720;
  const row = 22;
  const left = 170;
  const right = 160;
  const top = 24;
  const height = top + Math.max(1, opts.bars.length) * row + 24;
  const plot = width - left - right;
  const maxRatio = Math.max(1.5, ...opts.bars.map((b) => (b.limit > 0 ? b.value / b.limit : 0)));
  const x = (ratio: number) => left + (Math.min(ratio, maxRatio) / maxRatio) * plot;
  const body: string[] = [];
  opts.bars.forEach((b, i) => {
    const y = top + i * row;
    const ratio = b.limit > 0 ? b.value / b.limit : maxRatio;
    const over = ratio > 1;
    body.push(
      `<text x="${left - 6}" y="${y + 15}" text-anchor="end" ${FONT}>${esc(b.label)}</text>`,
      `<rect x="${left}" y="${y + 4}" width="${num(Math.max(1, x(ratio) - left))}" height="${row - 8}" fill="${over ? '#d64545' : '#3f8f5a'}"/>`,
      `<text x="${num(x(ratio) + 4)}" y="${y + 15}" ${FONT} fill="${over ? '#a02020' : '#333333'}">${esc(b.note)}</text>`,
    );
  });
  if (opts.bars.length === 0) body.push(`<text x="${left}" y="${top + 15}" ${FONT}>no data yet</text>`);
  const lx = num(x(1));
  body.push(
    `<line x1="${lx}" y1="${top}" x2="${lx}" y2="${height - 20}" stroke="#222222" stroke-dasharray="4 3"/>`,
    `<text x="${lx}" y="${height - 6}" text-anchor="middle" ${FONT}>RPO</text>`,
  );
  return frame(width, height, opts.title, body);
}

function axes(
  left: number,
  top: number,
  plotW: number,
  plotH: number,
  max: number,
  fmt: (v: number) => string,
): string[] {
  const out = [
    `<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#888888"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#888888"/>`,
  ];
  for (const f of [0, 0.5, 1]) {
    const y = num(top + plotH - f * plotH);
    out.push(
      `<text x="${left - 4}" y="${y + 4}" text-anchor="end" ${FONT}>${esc(fmt(max * f))}</text>`,
      `<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#eeeeee"/>`,
    );
  }
  return out;
}

function legend(series: { name: string; color: string }[], x: number, y: number): string[] {
  return series.flatMap((s, i) => [
    `<rect x="${x + i * 170}" y="${y - 9}" width="10" height="10" fill="${s.color}"/>`,
    `<text x="${x + i * 170 + 14}" y="${y}" ${FONT}>${esc(s.name)}</text>`,
  ]);
}

/** Vertical bars per label, series side by side; an optional limit line (e.g. the lag policy). */
export function barChart(opts: {
  title: string;
  labels: string[];
  series: Series[];
  format: (v: number) => string;
  width?: number;
  height?: number;
  limit?: { value: number; label: string };
  /** Labels whose bars are drawn red (failed drills). */
  flagged?: Set<number>;
}): string {
  const width = opts.width ?? 720;
  const height = opts.height ?? 240;
  const [left, top, bottom] = [70, 26, 44];
  const plotW = width - left - 16;
  const plotH = height - top - bottom;
  const max = Math.max(1e-9, opts.limit?.value ?? 0, ...opts.series.flatMap((s) => s.values)) * 1.1;
  const n = Math.max(1, opts.labels.length);
  const slot = plotW / n;
  const barW = Math.max(2, (slot * 0.7) / Math.max(1, opts.series.length));
  const body = axes(left, top, plotW, plotH, max, opts.format);
  opts.labels.forEach((label, i) => {
    opts.series.forEach((s, j) => {
      const v = s.values[i] ?? 0;
      // A flagged label (a failed drill) has no value to plot: a full red bar says so.
      const flagged = opts.flagged?.has(i) === true;
      const h = flagged ? plotH : (v / max) * plotH;
      const tip = flagged ? `${label}: failed` : `${label} ${s.name}: ${opts.format(v)}`;
      body.push(
        `<rect x="${num(left + i * slot + slot * 0.15 + j * barW)}" y="${num(top + plotH - h)}" width="${num(barW)}" height="${num(Math.max(0, h))}" fill="${flagged ? '#d64545' : s.color}"><title>${esc(tip)}</title></rect>`,
      );
    });
    if (n <= 16 || i % Math.ceil(n / 16) === 0)
      body.push(
        `<text x="${num(left + i * slot + slot / 2)}" y="${top + plotH + 14}" text-anchor="middle" ${FONT}>${esc(label)}</text>`,
      );
  });
  if (opts.labels.length === 0) body.push(`<text x="${left + 8}" y="${top + 20}" ${FONT}>no data yet</text>`);
  if (opts.limit) {
    const y = num(top + plotH - (opts.limit.value / max) * plotH);
    body.push(
      `<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#d64545" stroke-dasharray="5 3"/>`,
      `<text x="${left + plotW - 2}" y="${y - 3}" text-anchor="end" ${FONT} fill="#a02020">${esc(opts.limit.label)}</text>`,
    );
  }
  body.push(...legend(opts.series, left, height - 8));
  return frame(width, height, opts.title, body);
}

/** Lines over time (x in ms since the epoch), one per series; an optional limit line. */
export function lineChart(opts: {
  title: string;
  xs: number[];
  series: Series[];
  format: (v: number) => string;
  width?: number;
  height?: number;
  limit?: { value: number; label: string };
}): string {
  const width = opts.width ?? 720;
  const height = opts.height ?? 240;
  const [left, top, bottom] = [70, 26, 44];
  const plotW = width - left - 16;
  const plotH = height - top - bottom;
  const max = Math.max(1e-9, opts.limit?.value ?? 0, ...opts.series.flatMap((s) => s.values)) * 1.1;
  const x0 = Math.min(...opts.xs);
  const x1 = Math.max(...opts.xs);
  const span = x1 > x0 ? x1 - x0 : 1;
  const px = (x: number) => num(left + (opts.xs.length > 1 ? ((x - x0) / span) * plotW : plotW / 2));
  const py = (v: number) => num(top + plotH - (v / max) * plotH);
  const body = axes(left, top, plotW, plotH, max, opts.format);
  for (const s of opts.series) {
    const pts = opts.xs.map((x, i) => `${px(x)},${py(s.values[i] ?? 0)}`);
    if (pts.length > 1)
      body.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    opts.xs.forEach((x, i) =>
      body.push(
        `<circle cx="${px(x)}" cy="${py(s.values[i] ?? 0)}" r="3" fill="${s.color}"><title>${esc(`${new Date(x).toISOString().slice(0, 16)} ${s.name}: ${opts.format(s.values[i] ?? 0)}`)}</title></circle>`,
      ),
    );
  }
  if (opts.xs.length === 0) body.push(`<text x="${left + 8}" y="${top + 20}" ${FONT}>no data yet</text>`);
  else
    for (const [x, anchor] of [
      [x0, 'start'],
      [x1, 'end'],
    ] as const)
      body.push(
        `<text x="${px(x)}" y="${top + plotH + 14}" text-anchor="${anchor}" ${FONT}>${esc(new Date(x).toISOString().slice(0, 10))}</text>`,
      );
  if (opts.limit) {
    const y = py(opts.limit.value);
    body.push(
      `<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#d64545" stroke-dasharray="5 3"/>`,
      `<text x="${left + plotW - 2}" y="${y - 3}" text-anchor="end" ${FONT} fill="#a02020">${esc(opts.limit.label)}</text>`,
    );
  }
  body.push(...legend(opts.series, left, height - 8));
  return frame(width, height, opts.title, body);
}
