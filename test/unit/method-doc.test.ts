/**
 * docs/method.md resolves every step number the code cites: each step, figure and table named in a
 * comment under src/ must appear on that page, so a reader can look any of them up.
 */
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..', '..');
const doc = readFileSync(path.join(root, 'docs', 'method.md'), 'utf8');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The citations of a source text's comments: `S602`, `S101–S104`, `step 1170`, `table 440`, `Figs. 3–6`. */
export function citations(source: string): string[] {
  const comments = source.match(/\/\/.*$|\/\*[\s\S]*?\*\//gm) ?? [];
  const pattern =
    /\bS\d{2,3}(?:–S\d{2,3})?\b|\bsteps? \d{1,4}(?:–\d{1,4})?\b|\btables? \d{3}(?:–\d{3})?\b|\bFigs?\. \d+(?:–\d+)?\b/gi;
  return comments.flatMap((c) => (c.match(pattern) ?? []).map((m) => m.replace(/^Step/, 'step')));
}

describe('docs/method.md', () => {
  const cited = new Map<string, string>();
  for (const file of sourceFiles(path.join(root, 'src'))) {
    for (const c of citations(readFileSync(file, 'utf8'))) if (!cited.has(c)) cited.set(c, path.relative(root, file));
  }

  it('finds the citations it checks (the scan itself works)', () => {
    expect(citations('/** S101–S104: x */\n// seed 004 step 1170, table 440 and Figs. 3–6\nconst s = "S999";')).toEqual(
      ['S101–S104', 'step 1170', 'table 440', 'Figs. 3–6'],
    );
    expect(cited.size).toBeGreaterThan(20);
  });

  it('explains every step, figure and table a comment in src/ cites', () => {
    const missing = [...cited].filter(([c]) => !doc.includes(c)).map(([c, file]) => `${c} (${file})`);
    expect(missing).toEqual([]);
  });
});
