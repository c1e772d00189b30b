/**
 * Payload encryption against the real server: what the server stores names nothing of the estate,
 * the Web UI's codec server decodes what it stores, a run survives a key rotation, and a client
 * without the right key gets a typed error naming the key.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { ensureKeyFile, keyFileOf, rotateKeyFile } from '../../src/codec/keys';
import { kuraDataConverter, kuraPayloadCodecs } from '../../src/codec/data-converter';
import { startCodecServer, type CodecServer } from '../../src/codec/codec-server';
import { KEY_ID_METADATA } from '../../src/codec/aes-gcm-codec';
import { searchAttributeLabels } from '../../src/codec/labels';
import { KeyUnavailableError } from '../../src/domain/errors';
import type { Kura } from '../../src/client';
import type { BackupReport } from '../../src/domain/jobs';
import type { KuraWorkers } from '../../src/worker';
import { connectKura, eventually, failureOf, makeLab, startWorkers, type TestLab } from '../support/harness';

/** Every byte string of an event (payload data, metadata), as text: what anyone reading the server's store sees. */
function bytesOf(value: unknown, out: string[] = []): string[] {
  if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('latin1'));
  else if (Array.isArray(value)) for (const v of value) bytesOf(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) bytesOf(v, out);
  return out;
}

/** Every failure message and stack trace of an event: plain strings in the server's store. */
function failureTextsOf(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) failureTextsOf(v, out);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if ((k === 'message' || k === 'stackTrace') && typeof v === 'string') out.push(v);
      else failureTextsOf(v, out);
    }
  }
  return out;
}

/** The events of a run as the server stores them, read over a connection with no codec. */
async function rawHistory(connection: Connection, workflowId: string, runId?: string) {
  const events: unknown[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await connection.workflowService.getWorkflowExecutionHistory({
      namespace: inject('temporalNamespace'),
      execution: { workflowId, ...(runId ? { runId } : {}) },
      ...(nextPageToken ? { nextPageToken } : {}),
    });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return events;
}

describe('the history the server stores, fetched without the codec', () => {
  let lab: TestLab;
  let workers: KuraWorkers;
  let kura: Kura;
  let close: () => Promise<void>;
  let raw: Connection;
  let codecServer: CodecServer | undefined;

  beforeAll(async () => {
    lab = await makeLab({
      vms: 2,
      streams: 1,
      chunks: 2,
      edit: (cfg) => {
        cfg.security = { keyFile: 'kura-keys.json', hashSearchAttributes: true };
        // Guardians' ids (`vm/<vm>`) are shared by every lab of the run; these labs have keys of their own.
        cfg.ladder = { guardVms: false };
      },
    });
    workers = await startWorkers(lab);
    ({ kura, close } = await connectKura(lab));
    raw = await Connection.connect({ address: inject('temporalAddress') });
  });

  afterAll(async () => {
    await codecServer?.close();
    await raw?.close();
    await close?.();
    await workers?.shutdown();
    lab?.cleanup();
  });

  it("contains none of the lab's VM, volume or host names, nor its paths, in any payload or failure", async () => {
    const report: BackupReport = await (await kura.startBackup('vm-001')).result();
    await (await kura.startRestore(report.backupId, path.join(lab.dir, 'restores', 'vm-001.img'))).result();
    // A refusal whose message names the path it refused.
    const refused = await (
      await kura.startRestore(report.backupId, path.join(lab.dir, 'elsewhere', 'vm-001.img'))
    )
      .result()
      .catch((e: unknown) => e);
    expect(failureOf(refused)).toMatchObject({ type: 'AccessDenied' });
    expect(failureOf(refused).message).toContain('elsewhere');
    await (await kura.startFleet('all', { site: lab.site, concurrency: 2 })).result();

    const site = lab.loaded.config.sites[0]!;
    const names = [
      lab.site,
      lab.dir,
      ...site.vms.map((v) => v.name),
      ...site.hosts.map((h) => h.name),
      ...site.arrays.flatMap((a) => a.volumes.map((v) => v.id)),
    ];
    // Every run of this lab: the jobs, the fleet's children, the pool.
    const runs: { workflowId: string; runId: string }[] = [];
    await eventually(async () => {
      runs.length = 0;
      for await (const wf of kura.client.workflow.list({ query: `TaskQueue = '${lab.taskQueue}'` }))
        runs.push({ workflowId: wf.workflowId, runId: wf.runId });
      // backup, restore, refused restore, fleet and its 2 backups, the pool
      return runs.length >= 7;
    }, 20_000);

    let payloads = 0;
    const found: string[] = [];
    for (const run of runs) {
      const events = await rawHistory(raw, run.workflowId, run.runId);
      const texts = bytesOf(events);
      payloads += texts.length;
      for (const text of [...texts, ...failureTextsOf(events)])
        for (const name of names) if (text.includes(name)) found.push(`${run.workflowId}: ${name}`);
    }
    expect(payloads).toBeGreaterThan(50);
    expect(found).toEqual([]);

    // The scan sees names where they are in clear: the backup's input, decrypted, names its VM.
    const started = (await rawHistory(raw, report.workflowId))[0] as {
      workflowExecutionStartedEventAttributes: { input: { payloads: Payload[] } };
    };
    const [codec] = kuraPayloadCodecs(lab.loaded);
    const clear = await codec!.decode(started.workflowExecutionStartedEventAttributes.input.payloads);
    expect(bytesOf(clear).some((t) => t.includes('vm-001'))).toBe(true);
  });

  it('keeps the search attributes filterable, as keyed hashes the client matches', async () => {
    const labels = searchAttributeLabels(lab.loaded);
    const ids: string[] = [];
    for await (const wf of kura.client.workflow.list({
      query: `KuraKind = 'backup' AND KuraTarget = '${labels.value('vm-001')}' AND TaskQueue = '${lab.taskQueue}'`,
    }))
      ids.push(wf.workflowId);
    expect(ids.length).toBeGreaterThanOrEqual(1);
    expect(ids.every((id) => id.startsWith('op/backup/vm-001/'))).toBe(true);
    expect(labels.value('vm-001')).toMatch(/^h-[0-9a-f]{20}$/);
    expect(labels.name(labels.value('vm-001'))).toBe('vm-001');
  });

  it('is decoded by the codec server the way the Web UI calls it', async () => {
    const ui = 'http://127.0.0.1:8233';
    codecServer = await startCodecServer({
      codecs: kuraPayloadCodecs(lab.loaded),
      port: 0,
      origins: [ui],
      token: 'secret-token',
    });
    const report: BackupReport = await (await kura.startBackup('vm-002')).result();
    const events = (await rawHistory(raw, report.workflowId ?? '')) as {
      workflowExecutionStartedEventAttributes?: {
        input?: { payloads?: { metadata?: Record<string, Uint8Array>; data?: Uint8Array }[] };
      };
    }[];
    const input = events[0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    expect(Buffer.from(input.metadata![KEY_ID_METADATA]!).toString()).toBe('k1');
    // What the UI sends: the payloads as protobuf JSON (bytes in base64), its namespace in a header.
    const body = JSON.stringify({
      payloads: [
        {
          metadata: Object.fromEntries(
            Object.entries(input.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
          ),
          data: Buffer.from(input.data!).toString('base64'),
        },
      ],
    });
    const headers = {
      'Content-Type': 'application/json',
      'X-Namespace': inject('temporalNamespace'),
      Origin: ui,
    };

    // The browser's preflight first: the UI's origin and its X-Namespace header are allowed.
    const preflight = await fetch(`${codecServer.url}/decode`, {
      method: 'OPTIONS',
      headers: {
        Origin: ui,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type,x-namespace,authorization',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ui);
    expect(preflight.headers.get('access-control-allow-headers')).toContain('X-Namespace');

    const unauthorized = await fetch(`${codecServer.url}/decode`, { method: 'POST', headers, body });
    expect(unauthorized.status).toBe(401);

    const res = await fetch(`${codecServer.url}/decode`, {
      method: 'POST',
      headers: { ...headers, Authorization: 'Bearer secret-token' },
      body,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(ui);
    const decoded = (await res.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Buffer.from(decoded.payloads[0]!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
    const request = JSON.parse(Buffer.from(decoded.payloads[0]!.data, 'base64').toString()) as { target: string };
    expect(request.target).toBe('vm-002');

    // And back: what /encode returns, /decode reads.
    const encoded = await fetch(`${codecServer.url}/encode`, {
      method: 'POST',
      headers: { ...headers, Authorization: 'Bearer secret-token' },
      body: JSON.stringify(decoded),
    }).then((r) => r.json() as Promise<{ payloads: { metadata: Record<string, string>; data: string }[] }>);
    expect(Buffer.from(encoded.payloads[0]!.metadata[KEY_ID_METADATA]!, 'base64').toString()).toBe('k1');
    const again = await fetch(`${codecServer.url}/decode`, {
      method: 'POST',
      headers: { ...headers, Authorization: 'Bearer secret-token' },
      body: JSON.stringify(encoded),
    }).then((r) => r.json() as Promise<typeof decoded>);
    expect(again.payloads[0]!.data).toBe(decoded.payloads[0]!.data);
  });
});

describe('a key rotation', () => {
  let lab: TestLab;
  let workers: KuraWorkers | undefined;
  let kura: Kura;
  let close: () => Promise<void>;
  let raw: Connection;

  beforeAll(async () => {
    // A key file of its own: the rotations below must not reach the other labs of the run.
    lab = await makeLab({
      vms: 2,
      streams: 1,
      chunks: 2,
      edit: (cfg) => {
        cfg.security = { keyFile: 'kura-keys.json' };
        cfg.ladder = { guardVms: false };
      },
    });
    ({ kura, close } = await connectKura(lab));
    raw = await Connection.connect({ address: inject('temporalAddress') });
  });

  afterAll(async () => {
    await raw?.close();
    await close?.();
    await workers?.shutdown();
    lab?.cleanup();
  });

  /** The key ids of a run's workflow input and of its result, as stored. */
  async function keyIds(workflowId: string): Promise<{ input: string; result: string }> {
    const events = (await rawHistory(raw, workflowId)) as Record<
      string,
      | {
          input?: { payloads?: { metadata?: Record<string, Uint8Array> }[] };
          result?: { payloads?: { metadata?: Record<string, Uint8Array> }[] };
        }
      | undefined
    >[];
    const id = (p?: { metadata?: Record<string, Uint8Array> }) =>
      Buffer.from(p?.metadata?.[KEY_ID_METADATA] ?? []).toString();
    const started = events.find(
      (e) => e.workflowExecutionStartedEventAttributes,
    )!.workflowExecutionStartedEventAttributes!;
    const completed = events.find(
      (e) => e.workflowExecutionCompletedEventAttributes,
    )!.workflowExecutionCompletedEventAttributes!;
    return { input: id(started.input?.payloads?.[0]), result: id(completed.result?.payloads?.[0]) };
  }

  it('lets a workflow started under key 1 finish under key 2, and a running worker take key 3', async () => {
    // Started under k1 while no worker runs; the key rotates before any worker reads the input.
    const first = await kura.startBackup('vm-001');
    expect(rotateKeyFile(keyFileOf(lab.loaded)!)).toBe('k2');
    workers = await startWorkers(lab);
    const report: BackupReport = await first.result();
    expect(report.target).toBe('vm-001');
    expect(await keyIds(first.workflowId)).toEqual({ input: 'k1', result: 'k2' });

    // The workers keep running across the next rotation: they read the new key from the file.
    expect(rotateKeyFile(keyFileOf(lab.loaded)!)).toBe('k3');
    const second = await kura.startBackup('vm-002');
    expect((await second.result()).target).toBe('vm-002');
    expect(await keyIds(second.workflowId)).toEqual({ input: 'k3', result: 'k3' });
  });

  it('gives a client without the key a KeyUnavailable error naming it, and one with another key of that id too', async () => {
    const done = await kura.startBackup('vm-001', { requestedAt: new Date(0).toISOString() });
    await done.result();
    const connection = await Connection.connect({ address: inject('temporalAddress') });
    try {
      // A key file of its own: its k1 is not the installation's k1, and it has no k3 at all.
      const other = path.join(lab.dir, 'other-keys.json');
      ensureKeyFile(other);
      const stranger = new Client({
        connection,
        namespace: inject('temporalNamespace'),
        dataConverter: kuraDataConverter({ keyFile: other }),
      });
      const missing = await stranger.workflow
        .getHandle(done.workflowId)
        .result()
        .catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(KeyUnavailableError);
      expect(missing).toMatchObject({ type: 'KeyUnavailable', keyId: 'k3' });
      expect((missing as Error).message).toMatch(/key "k3", which the key file .*other-keys\.json does not hold/);

      // The same id, another key: it does not decrypt, and says so.
      const installation = keyFileOf(lab.loaded)!;
      const forged = path.join(lab.dir, 'forged-keys.json');
      const own = JSON.parse(readFileSync(installation, 'utf8')) as { keys: { id: string; key: string }[] };
      const theirs = JSON.parse(readFileSync(other, 'utf8')) as { keys: { id: string; key: string }[] };
      writeFileSync(
        forged,
        JSON.stringify({ ...theirs, keys: own.keys.map((k) => ({ ...k, key: theirs.keys[0]!.key })) }),
      );
      chmodSync(forged, 0o600);
      const wrong = new Client({
        connection,
        namespace: inject('temporalNamespace'),
        dataConverter: kuraDataConverter({ keyFile: forged }),
      });
      const undecryptable = await wrong.workflow
        .getHandle(done.workflowId)
        .result()
        .catch((e: unknown) => e);
      expect(undecryptable).toBeInstanceOf(KeyUnavailableError);
      expect(undecryptable).toMatchObject({ type: 'KeyUnavailable', keyId: 'k3' });
      expect((undecryptable as Error).message).toMatch(/key "k3" of the key file .*forged-keys\.json does not decrypt/);
    } finally {
      await connection.close();
    }
  });
});
