/**
 * Kura as a package another TypeScript service depends on: `npm pack` builds it, the tarball is
 * installed into a project of its own outside this repository, and that project's code — which
 * imports only `kura` — type-checks against the shipped declarations and runs a backup through
 * the client against the test run's server.
 *
 * The tarball is unpacked into the project's node_modules as `npm install` would; its declared
 * dependencies are linked from this checkout's node_modules rather than fetched, so the test needs
 * no network and still resolves nothing the package does not declare.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { KuraWorkers } from '../../src/worker';
import { labEnv, makeLab, sha256, startWorkers, type TestLab } from '../support/harness';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

let lab: TestLab;
let workers: KuraWorkers;
let dir: string;
let app: string;
let files: string[];

/** The consumer's code: only `kura` and the Temporal client it is used with. */
const CONSUMER = `
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import {
  Kura,
  kuraDataConverter,
  loadConfig,
  progressQuery,
  type BackupReport,
  type Progress,
  type sanOperation,
} from 'kura';

async function main(): Promise<void> {
  const connection = await Connection.connect({ address: process.env.TEMPORAL_ADDRESS });
  try {
    const loaded = loadConfig();
    // The installation's key file (kura.yaml's security.keyFile) encrypts what this client sends.
    const client = new Client({ connection, namespace: process.env.TEMPORAL_NAMESPACE, dataConverter: kuraDataConverter(loaded) });
    const kura = new Kura(client, loaded);
    const handle: WorkflowHandle<typeof sanOperation> = await kura.startBackup('vm-001', { requestedBy: 'consumer' });
    const report: BackupReport = await handle.result();
    const progress: Progress = await handle.query(progressQuery);
    console.log(JSON.stringify({ report, phase: progress.phase }));
  } finally {
    await connection.close();
  }
}

/** Never called: it only has to fail to compile, which it does only if the facade is typed, not \`any\`. */
export function misuse(kura: Kura): void {
  // @ts-expect-error a target is a string
  void kura.startBackup(42);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
`;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-package-'));
  const [made] = await Promise.all([
    makeLab({ vms: 2 }),
    // prepack builds dist/ first, so the tarball holds what this checkout's sources compile to.
    run('npm', ['pack', '--pack-destination', dir], { cwd: ROOT, timeout: 180_000 }),
  ]);
  lab = made;
  workers = await startWorkers(lab);
  const tarball = path.join(
    dir,
    readdirSync(dir).find((f) => f.endsWith('.tgz'))!,
  );
  files = (await run('tar', ['tzf', tarball])).stdout.split('\n').filter((f) => f !== '');

  app = path.join(dir, 'app');
  const installed = path.join(app, 'node_modules', 'kura');
  mkdirSync(installed, { recursive: true });
  await run('tar', ['xzf', tarball, '-C', installed, '--strip-components=1']);
  const manifest = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  // Kura's dependencies, and the consumer's own tools (the compiler and Node's types).
  for (const dep of [...Object.keys(manifest.dependencies), 'typescript', '@types/node']) {
    const link = path.join(app, 'node_modules', dep);
    mkdirSync(path.dirname(link), { recursive: true });
    symlinkSync(path.join(ROOT, 'node_modules', dep), link);
  }
  writeFileSync(
    path.join(app, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, dependencies: { kura: `file:${tarball}` } }),
  );
  writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'node16',
        moduleResolution: 'node16',
        strict: true,
        // Kura's declarations are checked as code, so a type they name but cannot resolve is an error here.
        skipLibCheck: false,
        types: ['node'],
        outDir: 'out',
      },
      include: ['index.ts'],
    }),
  );
  writeFileSync(path.join(app, 'index.ts'), CONSUMER);
}, 300_000);

afterAll(async () => {
  await workers?.shutdown();
  lab?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the kura package', () => {
  it('ships the built client with its declarations and the CLI, and no sources or tests', () => {
    expect(files).toContain('package/dist/client.js');
    expect(files).toContain('package/dist/client.d.ts');
    expect(files).toContain('package/bin/kura');
    expect(files.filter((f) => /^package\/(src|test|bench|docs)\//.test(f))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
  });

  it("type-checks a consumer's code against the shipped declarations", async () => {
    const tsc = path.join(app, 'node_modules', 'typescript', 'bin', 'tsc');
    const out = await run(process.execPath, [tsc, '-p', '.', '--pretty', 'false'], { cwd: app, timeout: 180_000 }).then(
      (r) => r.stdout,
      (err: { stdout: string }) => err.stdout,
    );
    // Diagnostics in third-party declarations are theirs (@temporalio/common names `ms` without its
    // types under node16 resolution); none may come from Kura's declarations or the consumer's code.
    const ours = out
      .split('\n')
      .filter((l) => /error TS/.test(l))
      .filter((l) => l.startsWith('index.ts') || l.includes('node_modules/kura/'));
    expect(ours).toEqual([]);
    expect(readdirSync(path.join(app, 'out'))).toContain('index.js');
  }, 240_000);

  it("runs a backup through the installed client, with the volume's bytes", async () => {
    const { stdout } = await run(process.execPath, ['out/index.js'], {
      cwd: app,
      env: labEnv(lab),
      timeout: 120_000,
    });
    const { report, phase } = JSON.parse(stdout) as { report: { sha256: string; sizeBytes: number }; phase: string };
    expect(report.sha256).toBe(await sha256(lab.dataVolume('vm-001')));
    expect(report.sizeBytes).toBe(4 * 1024 * 1024);
    expect(phase).toBe('done');
  }, 180_000);

  it('runs the installed CLI from the built code', async () => {
    const { stdout } = await run(process.execPath, [path.join(app, 'node_modules', 'kura', 'bin', 'kura'), '--help'], {
      cwd: app,
    });
    expect(stdout).toMatch(/^Usage: kura /);
    expect(stdout).toContain('start');
  });

  it('refuses imports that reach past the public client into its modules', async () => {
    const err = await run(process.execPath, ['-e', "require('kura/dist/worker')"], { cwd: app }).then(
      () => undefined,
      (e: { stderr: string }) => e.stderr,
    );
    expect(err).toContain('ERR_PACKAGE_PATH_NOT_EXPORTED');
  });
});
