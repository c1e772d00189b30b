/**
 * Reads kura.yaml: YAML syntax errors and schema problems are all collected and reported at once,
 * each with the file, the line, the path inside the document and the reason.
 */
import { readFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import { LineCounter, parseDocument, isNode } from 'yaml';
import { ConfigSchema, type Config } from '../domain/inventory';
import { ConfigInvalidError, NotFoundError, formatPath, type Issue } from '../domain/errors';

/** A validated configuration and where it came from. */
export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file read. */
  file: string;
  /** Directory of that file: relative paths inside it are relative to this. */
  dir: string;
}

/** The configuration file to use: the flag, else $KURA_CONFIG, else ./kura.yaml. */
export function configPath(explicit?: string): string {
  return path.resolve(explicit || process.env.KURA_CONFIG || 'kura.yaml');
}

/**
 * Loads and validates the configuration. Throws NotFoundError when the file is missing and
 * ConfigInvalidError listing every problem when it does not validate.
 */
export function loadConfig(file = configPath()): LoadedConfig {
  const abs = path.resolve(file);
  if (!existsSync(abs)) {
    throw new NotFoundError(
      `no configuration at ${abs}; create one with \`kura lab init --preset hospital\` or pass --config <file>`,
      { file: abs },
    );
  }
  return parseConfigText(readFileSync(abs, 'utf8'), abs);
}

/** Validates configuration text as if read from `file` (used by tests and `kura config check`). */
export function parseConfigText(text: string, file: string): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const display = path.relative(process.cwd(), file) || file;
  const issues: Issue[] = [];
  for (const err of doc.errors) {
    const line = lineCounter.linePos(err.pos[0]).line;
    issues.push({ path: `line ${line}`, message: err.message.split('\n')[0] ?? err.message });
  }
  if (issues.length > 0) throw new ConfigInvalidError(display, issues);

  const parsed = ConfigSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const where = formatPath(issue.path);
      const node = doc.getIn(issue.path as (string | number)[], true);
      const offset = isNode(node) && node.range ? node.range[0] : undefined;
      const line = offset === undefined ? undefined : lineCounter.linePos(offset).line;
      issues.push({ path: line === undefined ? where : `${where} (line ${line})`, message: issue.message });
    }
    throw new ConfigInvalidError(display, issues);
  }
  return { config: parsed.data, file, dir: path.dirname(file) };
}
