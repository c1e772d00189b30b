/**
 * Picks, fetches and writes the workflow histories the replay test replays: one run of every
 * workflow type (and of every kind or method its input names, and a failed run beside a completed
 * one) out of what a test run left on its dev server, each checked by a replay before it is written.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Client, Connection } from '@temporalio/client';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils';
import { temporal } from '@temporalio/proto';
import { Worker, type ReplayWorkerOptions } from '@temporalio/worker';
import { installationOfTaskQueue } from '../../src/api/task-queues';
import { decodePayload, kuraDataConverter } from '../../src/codec/data-converter';

type History = temporal.api.history.v1.IHistory;

/** Where the recorded histories live. */
export const HISTORIES_DIR = path.join(__dirname, 'histories');
/**
 * The key every recorded history is encrypted with: a key for tests only, committed so that the
 * replay decodes payloads through Kura's own codec, as a worker does.
 */
export const REPLAY_KEY_FILE = path.join(__dirname, 'replay-keys.json');
/** The command that refreshes the histories (named in failure messages and the docs). */
export const RECORD_COMMAND = 'npm run replay:record';

/** Histories longer than this are passed over for a shorter run of the same kind (keeps the directory small). */
const MAX_EVENTS = 1500;
/** How many runs of one workflow type, of each outcome (completed, failed, open), are fetched to find its kinds. */
const MAX_CANDIDATES = 60;
/** Histories larger than this (as JSON) are stored gzipped. */
const GZIP_ABOVE = 64 * 1024;

/** One recorded history, as read back from disk. */
export interface RecordedHistory {
  /** The file name without extension: `<workflowType>[-<variant>][-failed|-open]`. */
  name: string;
  workflowType: string;
  workflowId: string;
  history: History;
}

/** Reads every recorded history (`.json`, or `.json.gz` for the larger ones). */
export function readRecordedHistories(dir = HISTORIES_DIR): RecordedHistory[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json') || f.endsWith('.json.gz'))
    .sort()
    .map((f) => {
      const raw = readFileSync(path.join(dir, f));
      const json: unknown = JSON.parse((f.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8'));
      const { workflowId, history } = json as { workflowId: string; history: unknown };
      const h = historyFromJSON(history);
      const workflowType = h.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name ?? '';
      return { name: f.replace(/\.json(\.gz)?$/, ''), workflowType, workflowId, history: h };
    });
}

type StatusGroup = 'ok' | 'failed' | 'open';

function statusGroup(status: string): StatusGroup {
  if (status === 'COMPLETED' || status === 'CONTINUED_AS_NEW') return 'ok';
  if (status === 'FAILED') return 'failed';
  return 'open';
}

/** The kind a run's input names (`kind`, else `method`), which splits one type into variants. */
function variantOf(input: unknown): string | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const i = input as { kind?: unknown; method?: unknown };
  const v = typeof i.kind === 'string' ? i.kind : typeof i.method === 'string' ? i.method : undefined;
  return v === undefined ? undefined : v.replace(/[^A-Za-z0-9]+/g, '-').toLowerCase();
}

/** Replays histories in one replay worker; the error of each, in the order given (none when it replays). */
export async function replayErrors(
  options: ReplayWorkerOptions,
  histories: { workflowId: string; history: History }[],
): Promise<(Error | undefined)[]> {
  const out: (Error | undefined)[] = [];
  if (histories.length === 0) return out;
  for await (const r of Worker.runReplayHistories(options, histories)) out.push(r.error);
  return out;
}

function gitHead(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: __dirname, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** The installation of a task queue without one (src/api/task-queues.ts). */
const DEFAULT_INSTALLATION = 'default';

/** What the recorder needs of one listed run. */
interface Execution {
  type: string;
  workflowId: string;
  runId: string;
  status: string;
  historyLength: number;
  taskQueue: string;
}

/**
 * Every run of the namespace, read raw: the client's own listing decodes each memo, which fails for
 * runs a test encrypted with a key file of its own.
 */
async function* listExecutions(client: Client, namespace: string): AsyncGenerator<Execution> {
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await client.workflowService.listWorkflowExecutions({ namespace, nextPageToken, pageSize: 500 });
    for (const e of page.executions ?? [])
      yield {
        type: e.type?.name ?? '',
        workflowId: e.execution?.workflowId ?? '',
        runId: e.execution?.runId ?? '',
        status:
          temporal.api.enums.v1.WorkflowExecutionStatus[e.status ?? 0]?.replace('WORKFLOW_EXECUTION_STATUS_', '') ?? '',
        historyLength: Number(e.historyLength ?? 0),
        taskQueue: e.taskQueue ?? '',
      };
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
}

interface Candidate {
  info: Execution;
  history: History;
  variant: string | undefined;
  group: StatusGroup;
}

/**
 * Records the histories of every workflow the dev server at `address` ran: for each workflow type,
 * per variant, the longest completed run (under MAX_EVENTS) and the longest failed one; a type with
 * neither gets one of its open runs (`-open`). The histories already recorded must replay first (else nothing
 * is written); every new one is replayed before it is written, and one that does not replay on the
 * code that made it is reported and fails the recording. Files of other names are left as they are.
 */
export async function recordHistories(opts: {
  address: string;
  namespace: string;
  workflowBundlePath: string;
  keyFile: string;
  dir?: string;
}): Promise<void> {
  const dir = opts.dir ?? HISTORIES_DIR;
  const dataConverter = kuraDataConverter({ keyFile: opts.keyFile });
  const connection = await Connection.connect({ address: opts.address });
  try {
    const client = new Client({ connection, namespace: opts.namespace, dataConverter });
    const byType = new Map<string, Execution[]>();
    let otherInstallations = 0;
    for await (const info of listExecutions(client, opts.namespace)) {
      if (info.historyLength > MAX_EVENTS) continue;
      // A replay worker's task queue names no installation, so Kura's installation interceptor
      // refuses, on replay, a run of any other installation than the default one: those are left out.
      if (installationOfTaskQueue(info.taskQueue) !== DEFAULT_INSTALLATION) {
        otherInstallations++;
        continue;
      }
      const list = byType.get(info.type) ?? [];
      list.push(info);
      byType.set(info.type, list);
    }
    const chosen = new Map<string, Candidate>();
    for (const [type, infos] of [...byType].sort(([a], [b]) => a.localeCompare(b))) {
      const rank = { ok: 0, failed: 1, open: 2 } as const;
      infos.sort(
        (a, b) => rank[statusGroup(a.status)] - rank[statusGroup(b.status)] || b.historyLength - a.historyLength,
      );
      const found: Candidate[] = [];
      const fetched = { ok: 0, failed: 0, open: 0 };
      for (const info of infos) {
        // A type run hundreds of times still gets its failed runs looked at.
        if (fetched[statusGroup(info.status)]++ >= MAX_CANDIDATES) continue;
        const history = await client.workflow.getHandle(info.workflowId, info.runId).fetchHistory();
        const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
        let input: unknown;
        try {
          input = payload ? await decodePayload(client, payload) : undefined;
        } catch {
          continue; // encrypted with another installation's key (a test naming its own key file)
        }
        found.push({ info, history, variant: variantOf(input), group: statusGroup(info.status) });
      }
      const hasClosed = found.some((c) => c.group !== 'open');
      for (const c of found) {
        if (c.group === 'open' && hasClosed) continue;
        const name = [type, c.variant, c.group === 'ok' ? undefined : c.group].filter(Boolean).join('-');
        if (!chosen.has(name)) chosen.set(name, c);
      }
    }

    const replayOptions = {
      workflowBundle: { codePath: opts.workflowBundlePath },
      dataConverter,
      replayName: 'kura-record',
    } as const;
    // The histories already recorded must replay on this code before any is replaced: a refresh
    // never hides a change that breaks runs in flight (docs/workflow-changes.md).
    const existing = readRecordedHistories(dir);
    const broken = (await replayErrors(replayOptions, existing)).flatMap((e, i) =>
      e ? [`${existing[i]!.name}: ${e.message}`] : [],
    );
    if (broken.length > 0 && process.env.REPLAY_ALLOW_BREAK !== '1')
      throw new Error(
        `${broken.length} recorded histories no longer replay on this code, so nothing was recorded:\n` +
          `${broken.join('\n')}\nGuard the change with patched() (docs/workflow-changes.md); only a change meant ` +
          'to break old runs may record over them, with REPLAY_ALLOW_BREAK=1',
      );

    const picked = [...chosen].sort(([a], [b]) => a.localeCompare(b));
    const errors = await replayErrors(
      replayOptions,
      picked.map(([, c]) => ({ workflowId: c.info.workflowId, history: c.history })),
    );
    const commit = gitHead();
    mkdirSync(dir, { recursive: true });
    let total = 0;
    let written = 0;
    const failures: string[] = [];
    for (const [i, [name, c]] of picked.entries()) {
      const error = errors[i];
      if (error) {
        failures.push(`${name} (${c.info.workflowId}): ${error.message}`);
        continue;
      }
      const text = `{"workflowId":${JSON.stringify(c.info.workflowId)},"recordedFrom":${JSON.stringify(commit)},"history":${historyToJSON(c.history)}}\n`;
      const gz = text.length > GZIP_ABOVE;
      const body = gz ? gzipSync(text, { level: 9 }) : Buffer.from(text);
      for (const ext of ['.json', '.json.gz']) rmSync(path.join(dir, name + ext), { force: true });
      writeFileSync(path.join(dir, `${name}.json${gz ? '.gz' : ''}`), body);
      total += body.length;
      written++;
      console.log(`recorded ${name}: ${c.history.events?.length ?? 0} events, ${body.length} bytes`);
    }
    console.log(
      `recorded ${written} histories of ${byType.size} workflow types, ${total} bytes, in ${dir} ` +
        `(${otherInstallations} runs of other installations left out)`,
    );
    if (failures.length > 0)
      throw new Error(
        `${failures.length} histories do not replay on the code that ran them, and were not written:\n${failures.join('\n')}`,
      );
  } finally {
    await connection.close();
  }
}
