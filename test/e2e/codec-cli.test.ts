/**
 * Encryption as a person meets it: `npm start` creates the key file, runs a codec server and hands
 * the Web UI its address, so the UI decodes what the server stores; `kura keys` lists and rotates
 * the keys.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { poolWorkflowId } from '../../src/api/workflow-ids';
import { killLeftovers, kuraIn, makeStartHome, startKura, type StartHome } from '../support/kura-start';

let home: StartHome | undefined;

afterAll(() => {
  killLeftovers(home);
  if (home) rmSync(home.dir, { recursive: true, force: true });
});

describe('npm start with encryption on', () => {
  it('creates the key file, and the Web UI it starts decodes payloads through its codec server', async () => {
    home = await makeStartHome({ vms: 2 });
    const run = startKura(home);
    const [, codecUrl] = await run.waitFor(/codec server for the Web UI on (http:\/\/127\.0\.0\.1:\d+)/, 120_000);
    await run.waitFor(/serving — the workers and the Temporal server keep running/, 240_000);
    expect(run.text()).toMatch(/created the key file kura-keys\.json: payloads are encrypted/);
    expect(statSync(path.join(home.dir, 'kura-keys.json')).mode & 0o777).toBe(0o600);

    // The UI's own settings name the codec endpoint it calls from the browser.
    const ui = `http://127.0.0.1:${home.port + 1000}`;
    const settings = (await (await fetch(`${ui}/api/v1/settings`)).json()) as { Codec?: { Endpoint?: string } };
    expect(settings.Codec?.Endpoint).toBe(codecUrl);

    // What the server stores for the pool is encrypted; the codec server, called as the UI calls it, reads it.
    const connection = await Connection.connect({ address: `127.0.0.1:${home.port}` });
    let stored: { metadata?: Record<string, Uint8Array> | null; data?: Uint8Array | null };
    try {
      const page = await connection.workflowService.getWorkflowExecutionHistory({
        namespace: 'default',
        execution: { workflowId: poolWorkflowId('hospital') },
      });
      stored = page.history!.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    } finally {
      await connection.close();
    }
    expect(Buffer.from(stored.data!).toString('latin1')).not.toContain('hospital');
    const res = await fetch(`${codecUrl}/decode`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', Origin: ui },
      body: JSON.stringify({
        payloads: [
          {
            metadata: Object.fromEntries(
              Object.entries(stored.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
            ),
            data: Buffer.from(stored.data!).toString('base64'),
          },
        ],
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(ui);
    const body = (await res.json()) as { payloads: { data: string }[] };
    const input = JSON.parse(Buffer.from(body.payloads[0]!.data, 'base64').toString()) as { site: string };
    expect(input.site).toBe('hospital');

    run.signal('SIGINT', 'group');
    expect((await run.exit(60_000)).code).toBe(0);
  }, 420_000);

  it('lists the keys and rotates to a new one that encrypts, keeping the old', async () => {
    expect(home).toBeDefined();
    const rotated = await kuraIn(home!, ['keys', 'rotate', '--json']);
    expect(rotated.code, rotated.output).toBe(0);
    expect(JSON.parse(rotated.output)).toMatchObject({ ok: true, encrypts: 'k2' });
    const listed = await kuraIn(home!, ['keys', 'list', '--json']);
    expect(listed.code, listed.output).toBe(0);
    const { keys } = JSON.parse(listed.output) as { keys: { id: string; encrypts: boolean }[] };
    expect(keys.map((k) => [k.id, k.encrypts])).toEqual([
      ['k1', false],
      ['k2', true],
    ]);
  });
});
