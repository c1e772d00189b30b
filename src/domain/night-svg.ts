/**
 * The night plan as a self-contained SVG Gantt chart: one lane per drive, one bar per job on each
 * drive it holds, the backup window marked, hour ticks, and the jobs that do not fit listed below.
 * Plain strings, no dependency: the file opens in any browser and is checked by parsing it.
 */
import type { NightPlan } from './night-plan';
import { formatDuration } from './units';

const HOUR = 3_600_000;
const LEFT = 150;
const RIGHT = 30;
const TOP = 70;
const LANE = 44;
const WIDTH = 960;
const COLOURS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#9c755f'];

/** Renders a night plan as an SVG document (UTF-8 text, with its XML declaration). */
export function nightPlanSvg(plan: NightPlan): string {
  const opens = Date.parse(plan.window.startAt);
  // The chart spans the window, and a half hour either side so its edges show.
  const from = -HOUR / 2;
  const to = plan.window.lengthMs + HOUR / 2;
  const span = to - from;
  const x = (offset: number) => LEFT + ((offset - from) / span) * (WIDTH - LEFT - RIGHT);
  const lanes = Math.max(plan.drives.length, 1);
  const chartBottom = TOP + lanes * LANE;
  const unfitTop = chartBottom + 50;
  const height = unfitTop + (plan.unfit.length > 0 ? 24 + plan.unfit.length * 18 : 0) + 20;
  const out: string[] = [];
  out.push(
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(`Night plan ${plan.date} ${plan.window.start}–${plan.window.end} ${plan.timezone}`)}</title>`,
    `<rect class="background" x="0" y="0" width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text class="heading" x="${LEFT}" y="24" font-size="16" font-weight="bold">${esc(
      `Night of ${plan.date}: window ${plan.window.start}–${plan.window.end} (${plan.timezone}), ${plan.jobs.length} job${plan.jobs.length === 1 ? '' : 's'} on ${plan.drives.length} drive${plan.drives.length === 1 ? '' : 's'}${plan.unfit.length ? `, ${plan.unfit.length} not fitting` : ''}`,
    )}</text>`,
    `<rect class="window" data-start="${plan.window.start}" data-end="${plan.window.end}" x="${fmt(x(0))}" y="${TOP - 8}" width="${fmt(x(plan.window.lengthMs) - x(0))}" height="${lanes * LANE + 16}" fill="#e8f1fb" stroke="#1f5fa8" stroke-width="2" stroke-dasharray="6 3"/>`,
  );
  for (let h = 0; h * HOUR <= plan.window.lengthMs; h++) {
    const tx = fmt(x(h * HOUR));
    const label = clockAt(opens + h * HOUR, plan.timezone);
    out.push(
      `<line class="tick" x1="${tx}" y1="${TOP - 12}" x2="${tx}" y2="${chartBottom + 8}" stroke="#c8c8c8" stroke-width="1"/>`,
      `<text class="tick-label" x="${tx}" y="${TOP - 16}" text-anchor="middle" fill="#555555">${esc(label)}</text>`,
    );
  }
  plan.drives.forEach((drive, i) => {
    const y = TOP + i * LANE;
    out.push(
      `<g class="lane" data-drive="${esc(drive)}">`,
      `<rect class="lane-bg" x="${LEFT}" y="${y}" width="${WIDTH - LEFT - RIGHT}" height="${LANE}" fill="${i % 2 ? '#f7f7f7' : '#fdfdfd'}" fill-opacity="0.6"/>`,
      `<text class="lane-label" x="${LEFT - 10}" y="${y + LANE / 2 + 4}" text-anchor="end" font-weight="bold">${esc(drive)}</text>`,
    );
    plan.jobs.forEach((job, k) => {
      if (!job.drives.includes(drive)) return;
      const bx = x(job.offsetMs);
      const bw = x(job.offsetMs + job.durationMs) - bx;
      out.push(
        `<g class="bar" data-job="${esc(job.job)}" data-start="${job.start}" data-end="${job.end}">`,
        `<rect x="${fmt(bx)}" y="${y + 6}" width="${fmt(bw)}" height="${LANE - 12}" rx="4" fill="${COLOURS[k % COLOURS.length]}" stroke="#333333" stroke-width="1"/>`,
        // A label longer than its bar is cut at the bar's edge rather than drawn over the next bar.
        `<clipPath id="clip-${i}-${k}"><rect x="${fmt(bx)}" y="${y}" width="${fmt(bw)}" height="${LANE}"/></clipPath>`,
        `<text class="label" x="${fmt(bx + 6)}" y="${y + LANE / 2 + 4}" fill="#ffffff" clip-path="url(#clip-${i}-${k})">${esc(`${job.target} ${job.start}–${job.end}`)}</text>`,
        `<title>${esc(`${job.job}: ${job.start}–${job.end} (${formatDuration(job.durationMs)})`)}</title>`,
        `</g>`,
      );
    });
    out.push(`</g>`);
  });
  if (plan.drives.length === 0)
    out.push(`<text class="no-drive" x="${LEFT}" y="${TOP + LANE / 2}" fill="#b00020">${esc('no free drive')}</text>`);
  out.push(
    `<text class="window-label" x="${fmt(x(0))}" y="${chartBottom + 26}" fill="#1f5fa8">${esc(`window opens ${plan.window.start}`)}</text>`,
    `<text class="window-label" x="${fmt(x(plan.window.lengthMs))}" y="${chartBottom + 26}" text-anchor="end" fill="#1f5fa8">${esc(`closes ${plan.window.end}`)}</text>`,
  );
  if (plan.unfit.length > 0) {
    out.push(
      `<text class="unfit-heading" x="20" y="${unfitTop}" font-weight="bold" fill="#b00020">${esc('Not fitting:')}</text>`,
    );
    plan.unfit.forEach((u, i) =>
      out.push(
        `<text class="unfit" data-job="${esc(u.job)}" x="20" y="${unfitTop + 18 * (i + 1)}" fill="#b00020">${esc(`${u.job}: ${u.reason}`)}</text>`,
      ),
    );
  }
  out.push(`</svg>`, '');
  return out.join('\n');
}

function clockAt(instant: number, timezone: string): string {
  return new Intl.DateTimeFormat('en-GB', { timeZone: timezone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
    .format(new Date(instant))
    .slice(0, 5);
}

function fmt(n: number): string {
  return n.toFixed(1);
}

/** Text and attribute values escaped for XML. */
function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}
