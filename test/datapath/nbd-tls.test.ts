/**
 * NBD exports over TLS (NBD_OPT_STARTTLS) with the certificate and key kura.yaml gives the
 * datapath: Debian's qemu-img, qemu-io and nbdinfo connect over TLS, trusting the test's own CA,
 * and read and write the volume's real bytes; a client that does not start TLS is refused, and the
 * refusal is logged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startDatapath, type DatapathService } from '../../src/datapath/service';
import { InvalidInputError } from '../../src/domain/errors';
import { makeLab, type TestLab } from '../support/harness';
import { freePort } from '../support/nbd';

const run = promisify(execFile);
const SIZE = 1024 * 1024;
let lab: TestLab;
let dp: DatapathService;
let name: string;
/** The client's certificate directory (qemu's and libnbd's layout: ca-cert.pem). */
let clientDir: string;
let serverDir: string;
const logs: string[] = [];

/** A CA, and a server certificate it signs for 127.0.0.1 and localhost (EC keys: quick to make). */
async function makeCertificates(dir: string): Promise<void> {
  mkdirSync(path.join(dir, 'client'), { recursive: true });
  mkdirSync(path.join(dir, 'server'), { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = path.join(dir, 'client', 'ca-cert.pem');
  const caKey = path.join(dir, 'ca-key.pem');
  await run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    caKey,
    '-out',
    ca,
    '-days',
    '2',
    '-subj',
    '/CN=kura-test-ca',
  ]);
  const csr = path.join(dir, 'server.csr');
  const key = path.join(dir, 'server', 'server-key.pem');
  await run('openssl', ['req', ...ec, '-keyout', key, '-out', csr, '-subj', '/CN=localhost']);
  const ext = path.join(dir, 'ext.cnf');
  writeFileSync(
    ext,
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n',
  );
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-out',
    path.join(dir, 'server', 'server-cert.pem'),
    '-days',
    '2',
    '-extfile',
    ext,
  ]);
}

beforeAll(async () => {
  const [nbdPort, controlPort] = [await freePort(), await freePort()];
  lab = await makeLab({
    vms: 1,
    dataVolumeSize: SIZE,
    edit: (cfg) =>
      void (cfg.datapath = {
        nbdPort,
        controlPort,
        // Relative to kura.yaml, as an operator writes them.
        tls: { cert: 'certs/server/server-cert.pem', key: 'certs/server/server-key.pem' },
      }),
  });
  await makeCertificates(path.join(lab.dir, 'certs'));
  clientDir = path.join(lab.dir, 'certs', 'client');
  serverDir = path.join(lab.dir, 'certs', 'server');
  dp = await startDatapath(lab.loaded, lab.paths, { log: (l) => logs.push(l) });
  name = lab.loaded.config.sites[0]!.vms[0]!.dataVolume;
});

afterAll(async () => {
  await dp?.close();
  lab?.cleanup();
});

/** qemu's arguments for an NBD export over TLS with the test CA (`--object tls-creds-x509`). */
const qemuTls = (port: number) => [
  '--object',
  `tls-creds-x509,id=tls0,dir=${clientDir},endpoint=client`,
  '--image-opts',
  `driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port=${port},file.export=${name},file.tls-creds=tls0`,
];

describe('NBD over TLS', () => {
  it('serves qemu-io and qemu-img over TLS: a write lands in main storage, and the copy read back equals it', async () => {
    await run('qemu-io', [...qemuTls(dp.nbdPort), '-c', 'write -P 0x5a 65536 131072']);
    const main = readFileSync(lab.dataVolume('vm-001'));
    expect(main.subarray(65536, 65536 + 131072).every((b) => b === 0x5a)).toBe(true);

    const out = path.join(lab.dir, 'over-tls.img');
    await run('qemu-img', ['convert', '-O', 'raw', ...qemuTls(dp.nbdPort), out]);
    expect(readFileSync(out).equals(main)).toBe(true);
    expect(logs.some((l) => /^nbd: 127\.0\.0\.1:\d+: TLS started \(TLSv1\.[23]\)$/.test(l))).toBe(true);
    expect(dp.nbdTls).toBe('required');
  });

  it('serves nbdinfo with --tls=require semantics (nbds://) and the CA directory', async () => {
    const { stdout } = await run('nbdinfo', [
      '--json',
      `nbds://127.0.0.1:${dp.nbdPort}/${name}?tls-certificates=${clientDir}`,
    ]);
    const info = JSON.parse(stdout) as { exports: { 'export-size': number; 'export-name': string }[] };
    expect(info.exports[0]).toMatchObject({ 'export-name': name, 'export-size': SIZE });
  });

  it('refuses a client that does not start TLS, and logs it', async () => {
    const plain = await run('nbdinfo', [`nbd://127.0.0.1:${dp.nbdPort}/${name}`]).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(plain).not.toBeNull();
    expect(plain!.code).not.toBe(0);
    // libnbd reports NBD_REP_ERR_TLS_REQD as "not supported", without the server's text.
    expect(plain!.stderr).toMatch(/nbd_opt_go: server replied with error to opt_go request/);
    expect(
      logs.some((l) =>
        /NBD_OPT_(GO|INFO|LIST|STRUCTURED_REPLY|SET_META_CONTEXT) without TLS, which this server requires; answered NBD_REP_ERR_TLS_REQD$/.test(
          l,
        ),
      ),
    ).toBe(true);

    const qemu = await run('qemu-img', ['info', '-f', 'raw', `nbd://127.0.0.1:${dp.nbdPort}/${name}`]).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(qemu).not.toBeNull();
    expect(qemu!.stderr).toMatch(/TLS/i);
  });

  it('refuses a client that does not trust the certificate: the handshake fails and nothing is served', async () => {
    const stranger = path.join(lab.dir, 'stranger');
    mkdirSync(stranger, { recursive: true });
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      path.join(stranger, 'ca-key.pem'),
      '-out',
      path.join(stranger, 'ca-cert.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=another-ca',
    ]);
    const r = await run('nbdinfo', [`nbds://127.0.0.1:${dp.nbdPort}/${name}?tls-certificates=${stranger}`]).then(
      () => null,
      (e: { code: number }) => e,
    );
    expect(r).not.toBeNull();
    expect(r!.code).not.toBe(0);
  });

  it('refuses to start with a certificate it cannot read, naming the key and the file', async () => {
    const err = await startDatapath(lab.loaded, lab.paths, {
      nbdPort: 0,
      controlPort: 0,
      settings: { tls: { cert: 'certs/server/missing.pem', key: 'certs/server/server-key.pem', require: true } },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toBe(
      `datapath.tls.cert of ${lab.configFile}: cannot read ${path.join(lab.dir, 'certs', 'server', 'missing.pem')} (ENOENT); name a PEM file the datapath's user can read`,
    );
  });
  it('serves plain and TLS clients alike when kura.yaml sets require: false', async () => {
    // The same volumes, served by a datapath of its own: the first one lets them go.
    await dp.close();
    const optional = await startDatapath(lab.loaded, lab.paths, {
      nbdPort: 0,
      controlPort: 0,
      settings: {
        tls: {
          cert: path.join(serverDir, 'server-cert.pem'),
          key: path.join(serverDir, 'server-key.pem'),
          require: false,
        },
      },
    });
    dp = optional;
    expect(dp.nbdTls).toBe('offered');
    const plain = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${optional.nbdPort}/${name}`]);
    expect(plain.stdout.trim()).toBe(String(SIZE));
    const secure = await run('nbdinfo', [
      '--size',
      `nbds://127.0.0.1:${optional.nbdPort}/${name}?tls-certificates=${clientDir}`,
    ]);
    expect(secure.stdout.trim()).toBe(String(SIZE));
  });
});
