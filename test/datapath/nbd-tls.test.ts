/**
 * NBD exports over TLS (NBD_OPT_STARTTLS) with the certificate and key kura.yaml gives the
 * datapath: Debian's qemu-img, qemu-io and nbdinfo connect over TLS, trusting the test's own CA,
 * and read and write the volume's real bytes; a client that does not start TLS is refused, and the
 * refusal is logged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
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

/** The NBD handshake spoken byte by byte over a socket that can be upgraded to TLS in the middle. */
class RawClient {
  sock: net.Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(port: number) {
    this.sock = net.connect(port, '127.0.0.1');
    this.attach(this.sock);
  }

  private attach(sock: net.Socket): void {
    sock.on('data', (c: Buffer) => (this.buffer = Buffer.concat([this.buffer, c])));
    sock.on('close', () => (this.ended = true));
    sock.on('error', () => undefined);
  }

  async read(n: number): Promise<Buffer> {
    for (const end = Date.now() + 5000; this.buffer.length < n;) {
      if (this.ended) throw new Error(`the server closed the connection before sending ${n} bytes`);
      if (Date.now() > end) throw new Error(`no ${n} bytes from the server within 5 s`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  async closedByServer(): Promise<boolean> {
    for (const end = Date.now() + 5000; !this.ended && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
    return this.ended;
  }

  async hello(): Promise<void> {
    expect((await this.read(18)).subarray(0, 8).toString('latin1')).toBe('NBDMAGIC');
    this.sock.write(Buffer.from([0, 0, 0, 3]));
  }

  option(opt: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.write('IHAVEOPT', 0, 'latin1');
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.sock.write(Buffer.concat([h, data]));
  }

  async reply(): Promise<{ option: number; type: number; text: string; data: Buffer }> {
    const h = await this.read(20);
    const data = await this.read(h.readUInt32BE(16));
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), text: data.toString('utf8'), data };
  }

  /** The client's side of STARTTLS once acknowledged: TLS over the same socket, trusting the test CA. */
  async upgrade(): Promise<string> {
    this.sock.removeAllListeners('data');
    const secure = tls.connect({
      socket: this.sock,
      ca: readFileSync(path.join(clientDir, 'ca-cert.pem')),
      servername: 'localhost',
    });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.sock = secure;
    this.attach(secure);
    return secure.getProtocol() ?? '';
  }
}

const OPT = { ExportName: 1, List: 3, StartTls: 5, Go: 7 } as const;
const REP = { Ack: 1, Info: 3, ErrUnsup: 2 ** 31 + 1, ErrInvalid: 2 ** 31 + 3, ErrTlsReqd: 2 ** 31 + 5 } as const;

function goData(exportName: string): Buffer {
  const n = Buffer.from(exportName, 'utf8');
  const b = Buffer.alloc(4 + n.length + 2);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
}

describe('the STARTTLS handshake, byte by byte', () => {
  it('answers options in the clear with NBD_REP_ERR_TLS_REQD, and cuts off NBD_OPT_EXPORT_NAME', async () => {
    const c = new RawClient(dp.nbdPort);
    await c.hello();
    c.option(OPT.List);
    expect(await c.reply()).toMatchObject({
      option: OPT.List,
      type: REP.ErrTlsReqd,
      text: 'NBD_OPT_LIST: this server requires TLS; start it with NBD_OPT_STARTTLS first',
    });
    c.option(OPT.ExportName, Buffer.from(name));
    expect(await c.closedByServer()).toBe(true);
    expect(logs).toContainEqual(
      expect.stringMatching(
        /^nbd: 127\.0\.0\.1:\d+: NBD_OPT_EXPORT_NAME without TLS, which this server requires; closed the connection$/,
      ),
    );
  });

  it('starts TLS on the same socket, refuses a second STARTTLS inside it, and serves the export over it', async () => {
    const c = new RawClient(dp.nbdPort);
    await c.hello();
    c.option(OPT.StartTls, Buffer.from('x'));
    expect(await c.reply()).toMatchObject({
      type: REP.ErrInvalid,
      text: 'NBD_OPT_STARTTLS: takes no data, but the option has 1 bytes',
    });
    c.option(OPT.StartTls);
    expect(await c.reply()).toMatchObject({ option: OPT.StartTls, type: REP.Ack });
    expect(await c.upgrade()).toMatch(/^TLSv1\.[23]$/);
    c.option(OPT.StartTls);
    expect(await c.reply()).toMatchObject({ type: REP.ErrInvalid, text: 'NBD_OPT_STARTTLS: TLS is already started' });
    c.option(OPT.Go, goData(name));
    const info = await c.reply();
    expect(info.type).toBe(REP.Info);
    expect(Number(info.data.readBigUInt64BE(2))).toBe(SIZE);
    expect((await c.reply()).type).toBe(REP.Ack);
    const req = Buffer.alloc(28);
    req.writeUInt32BE(0x25609513, 0);
    req.write('cookie42', 8, 'latin1');
    req.writeBigUInt64BE(65536n, 16);
    req.writeUInt32BE(4096, 24);
    c.sock.write(req);
    const reply = await c.read(16 + 4096);
    expect(reply.readUInt32BE(4)).toBe(0);
    expect(reply.subarray(16).equals(readFileSync(lab.dataVolume('vm-001')).subarray(65536, 65536 + 4096))).toBe(true);
    c.sock.destroy();
  });
});

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
