/**
 * Reads kura.yaml: YAML syntax errors and schema problems are all collected and reported at once,
 * each with the file, the line, the path inside the document and the reason.
 */
import { readFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import { LineCounter, parseDocument, isNode, visit, type Document } from 'yaml';
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
  return parseConfigText(utf8Text(readFileSync(abs), abs), abs);
}

/**
 * The file's bytes as text. Decoding leniently would turn a stray byte inside a name or a path
 * into U+FFFD and validate a configuration that names something else; the line of the first byte
 * that is not UTF-8 is reported instead.
 */
function utf8Text(bytes: Buffer, file: string): string {
  const strict = new TextDecoder('utf-8', { fatal: true });
  try {
    return strict.decode(bytes);
  } catch {
    let line = 1;
    for (let start = 0; start <= bytes.length; line++) {
      const end = bytes.indexOf(0x0a, start);
      const stop = end < 0 ? bytes.length : end;
      try {
        strict.decode(bytes.subarray(start, stop));
      } catch {
        break;
      }
      start = stop + 1;
    }
    const display = path.relative(process.cwd(), file) || file;
    throw new ConfigInvalidError(display, [
      { path: `line ${line}`, message: 'bytes that are not UTF-8; kura.yaml must be UTF-8 text' },
    ]);
  }
}

/** Validates configuration text as if read from `file` (used by tests and `kura config check`). */
export function parseConfigText(text: string, file: string): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const display = path.relative(process.cwd(), file) || file;
  const issues: Issue[] = [];
  for (const err of doc.errors) {
    const issue = { path: `line ${lineCounter.linePos(err.pos[0]).line}`, message: yamlProblem(err.message) };
    if (!issues.some((i) => i.path === issue.path && i.message === issue.message)) issues.push(issue);
  }
  if (issues.length > 0) throw new ConfigInvalidError(display, issues);

  const parsed = ConfigSchema.safeParse(documentValue(doc, lineCounter, display));
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const where = formatPath(issue.path);
      // The whole document is wrong (empty, a scalar, a list): it starts at the first line of its
      // contents, or at line 1 when it has none, so the problem still has a place.
      const node = where === '' ? (doc.contents ?? undefined) : doc.getIn(issue.path as (string | number)[], true);
      const offset = isNode(node) && node.range ? node.range[0] : where === '' ? 0 : undefined;
      const line = offset === undefined ? undefined : lineCounter.linePos(offset).line;
      const path = where === '' ? `line ${line}` : line === undefined ? where : `${where} (line ${line})`;
      issues.push({ path, message: issue.message });
    }
    throw new ConfigInvalidError(display, issues);
  }
  return { config: parsed.data, file, dir: path.dirname(file) };
}

/**
 * The document as plain data. Reading it can fail after a clean parse: aliases that expand to more
 * values than the reader allows (the "billion laughs"), or nesting deeper than its stack; that is a
 * problem of the file, reported at the first alias (or line 1), not an internal error.
 */
function documentValue(doc: Document, lineCounter: LineCounter, display: string): unknown {
  try {
    return doc.toJS();
  } catch (err) {
    let offset = 0;
    visit(doc, {
      Alias(_, node) {
        offset = node.range?.[0] ?? 0;
        return visit.BREAK;
      },
    });
    const reason = err instanceof Error ? err.message : String(err);
    const message = /alias count/i.test(reason)
      ? 'aliases (*name) expand to more values than a configuration holds; write the values out instead'
      : yamlProblem(reason);
    throw new ConfigInvalidError(display, [{ path: `line ${lineCounter.linePos(offset).line}`, message }]);
  }
}

/**
 * A YAML error as a person should read it: its first line; the parser's own stack overflow (which it
 * reports as an error of the document) means collections nested far deeper than a configuration goes.
 */
function yamlProblem(message: string): string {
  const first = message.split('\n')[0] ?? message;
  return /Maximum call stack size exceeded/.test(first)
    ? 'collections nest too deeply to read; a configuration needs only a few levels'
    : first;
}
