/**
 * Starts one real Temporal dev server for the test run and bundles the workflow code once;
 * tests get the address and the bundle's path through `inject`. Stops the server afterwards.
 * With KURA_TEMPORAL_ADDRESS set (`npm run test:cluster`), the tests run against that server
 * instead, a Temporal cluster on PostgreSQL, and no dev server is started.
 */
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestProject } from 'vitest/node';
import { bundleWorkflowCode } from '@temporalio/worker';
import { serverAnswers, startDevServer, type DevServer } from '../../src/stack/devserver';
import { WORKFLOW_BUNDLE_CONVERTERS } from '../../src/codec/data-converter';
import { ensureKeyFile } from '../../src/codec/keys';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalNamespace: string;
    /** A second namespace, for callers of Kura's Nexus service. */
    callerNamespace: string;
    workflowBundlePath: string;
    /**
     * The key file every test lab encrypts with: the labs share one namespace, and some workflow ids
     * (a guardian's `vm/<vm>`) with it, so they are one installation as far as Temporal can tell.
     */
    keyFilePath: string;
  }
}

/** The namespace Nexus callers run in, beside the one Kura runs in. */
const CALLER_NAMESPACE = 'kura-callers';

let server: DevServer | undefined;
let dir: string | undefined;

/**
 * The running server the tests are pointed at with KURA_TEMPORAL_ADDRESS (a cluster's frontend),
 * once it answers in both namespaces; undefined when the tests start their own dev server.
 */
async function givenServer(): Promise<Pick<DevServer, 'address' | 'namespace'> | undefined> {
  const address = process.env.KURA_TEMPORAL_ADDRESS;
  if (!address) return undefined;
  const namespace = process.env.KURA_TEMPORAL_NAMESPACE ?? 'default';
  // One probe has a 1.5 s connect timeout, which a loaded machine's cluster can miss even when it
  // is up (a test:cluster run failed so, right after the cluster said it was ready): a minute of them.
  const deadline = Date.now() + 60_000;
  for (const ns of [namespace, CALLER_NAMESPACE]) {
    let answers = await serverAnswers(address, ns);
    while (!answers && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      answers = await serverAnswers(address, ns);
    }
    if (!answers) {
      throw new Error(
        `KURA_TEMPORAL_ADDRESS=${address}: no Temporal frontend there answered for namespace ${ns} within 60 s; start the cluster with \`npm run cluster\` (it registers ${namespace} and ${CALLER_NAMESPACE}), or unset KURA_TEMPORAL_ADDRESS to test on a dev server`,
      );
    }
  }
  return { address, namespace };
}

export async function setup(project: TestProject): Promise<void> {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kura-test-'));
  const given = await givenServer();
  const [srv, bundle] = await Promise.all([
    given ??
      startDevServer({
        headless: true,
        dbFile: path.join(dir, 'temporal.db'),
        logFile: path.join(dir, 'temporal.log'),
        readyTimeoutMs: 90_000,
        extraNamespaces: [CALLER_NAMESPACE],
      }),
    bundleWorkflowCode({
      workflowsPath: require.resolve('../../src/workflows/bundle-entry.ts'),
      ...WORKFLOW_BUNDLE_CONVERTERS,
      // What src/worker.ts's workflowInterceptorModules() names, spelled with the extension vitest needs.
      workflowInterceptorModules: [require.resolve('../../src/workflows/installation.ts')],
      logger: quietLogger,
    }),
  ]);
  // A given server belongs to whoever started it: teardown leaves it running.
  if (!given) server = srv as DevServer;
  const bundlePath = path.join(dir, 'workflow-bundle.js');
  writeFileSync(bundlePath, bundle.code);
  project.provide('temporalAddress', srv.address);
  project.provide('temporalNamespace', srv.namespace);
  project.provide('callerNamespace', CALLER_NAMESPACE);
  project.provide('workflowBundlePath', bundlePath);
  const keyFile = path.join(dir, 'kura-keys.json');
  ensureKeyFile(keyFile);
  project.provide('keyFilePath', keyFile);
}

export async function teardown(): Promise<void> {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}

const noop = () => undefined;
const quietLogger = {
  log: noop,
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: (m: string) => console.error(m),
};
