/**
 * The datapath's control API is not open to every local process: a request needs the token the
 * datapath writes at each start into an owner-only file; one without it, or with another, is
 * refused with 401, logged, and changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import { DatapathClient } from '../../src/datapath/client';
import { controlTokenFile, readControlToken } from '../../src/datapath/token';
import { ErrorType, KuraError } from '../../src/domain/errors';
import { makeLab, type TestLab } from '../support/harness';
import { freePort } from '../support/nbd';

let lab: TestLab;
let dp: DatapathService;
let name: string;
const logs: string[] = [];

beforeAll(async () => {
  const [nbdPort, controlPort] = [await freePort(), await freePort()];
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: 1024 * 1024,
    edit: (cfg) => void (cfg.datapath = { nbdPort, controlPort }),
  });
  dp = await startDatapath(lab.loaded, lab.paths, { log: (l) => logs.push(l) });
  name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
});

afterAll(async () => {
  await dp?.close();
  lab?.cleanup();
});

const enterBackup = (image: string, headers: Record<string, string>) =>
  fetch(`${dp.controlUrl}/v1/volumes/${encodeURIComponent(name)}/enter-backup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ backupId: 'intruder', image }),
  });

describe("the control API's token", () => {
  it('is written at start into an owner-only file under Kura home', () => {
    expect(dp.tokenFile).toBe(path.join(lab.paths.home, 'datapath', 'control.token'));
    expect(dp.tokenFile).toBe(controlTokenFile(lab.loaded, lab.paths));
    expect(statSync(dp.tokenFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(dp.tokenFile, 'utf8')).toBe(`${dp.token}\n`);
    expect(dp.token).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses a request without it with 401 AccessDenied naming the file, logs it, and changes nothing', async () => {
    const image = path.join(lab.dir, 'no-token.img');
    const res = await enterBackup(image, {});
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="kura-datapath"');
    expect(await res.json()).toEqual({
      error: {
        type: 'AccessDenied',
        message: `the datapath's control API needs the token of ${dp.tokenFile} as "Authorization: Bearer <token>"; the request had no token`,
      },
    });
    expect(dp.volumes.get(name)!.status()).toMatchObject({ mode: 'passthrough', backupId: null });
    expect(existsSync(image)).toBe(false);
    expect(logs.at(-1)).toMatch(
      new RegExp(
        `^control: refused POST "/v1/volumes/${encodeURIComponent(name)}/enter-backup" from 127\\.0\\.0\\.1:\\d+: no token$`,
      ),
    );
  });

  it('refuses a wrong token the same way, reads included', async () => {
    const image = path.join(lab.dir, 'wrong-token.img');
    const wrong = await enterBackup(image, { authorization: `Bearer ${'f'.repeat(64)}` });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { message: string } }).error.message).toMatch(/had a wrong token$/);
    expect(existsSync(image)).toBe(false);
    expect(dp.volumes.get(name)!.status()).toMatchObject({ mode: 'passthrough', backupId: null });
    expect(logs.at(-1)).toMatch(/: a wrong token$/);

    const read = await fetch(`${dp.controlUrl}/v1/volumes`, { headers: { authorization: dp.token } });
    expect(read.status).toBe(401);
    const client = new DatapathClient(dp.controlUrl, 'not-the-token');
    const err = await client.status(name).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KuraError);
    expect((err as KuraError).type).toBe(ErrorType.AccessDenied);
  });

  it('lets a client that reads the file through a restart of the datapath, which writes a new token', async () => {
    const client = new DatapathClient(dp.controlUrl, () => readControlToken(dp.tokenFile));
    expect((await client.status(name)).mode).toBe('passthrough');
    const before = dp.token;
    await dp.close();
    dp = await startDatapath(lab.loaded, lab.paths, { log: (l) => logs.push(l) });
    expect(dp.token).not.toBe(before);
    expect(statSync(dp.tokenFile).mode & 0o777).toBe(0o600);
    expect((await client.status(name)).mode).toBe('passthrough');
    // The old token no longer opens anything.
    expect(
      (await fetch(`${dp.controlUrl}/v1/volumes`, { headers: { authorization: `Bearer ${before}` } })).status,
    ).toBe(401);
  });

  it('says where the token should be when the datapath has not written one', () => {
    const missing = path.join(lab.dir, 'nowhere', 'control.token');
    expect(() => readControlToken(missing)).toThrow(
      new RegExp(
        `^cannot read the datapath's control token ${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(ENOENT\\)`,
      ),
    );
  });
});
