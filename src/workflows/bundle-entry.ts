/**
 * The workflow bundle's entry: every workflow of `./index` by name, each module evaluated only when
 * the worker looks that workflow up, so a new workflow evaluates its own module graph, not all of them.
 *
 * With a reusable V8 context the SDK evaluates the bundle's modules again for every workflow it
 * creates (a new run, or a run evicted from the sticky cache) and takes the workflow from this
 * module's exports by its type name (docs/adr/049). `./index` stays the typed list the clients
 * import; the mapped type below makes the two lists one: a workflow missing here, or one here that
 * `./index` does not export, fails the type check.
 *
 * The file has no `import` or `export` statement on purpose: the bundler must take it for a
 * CommonJS module, whose exports may be getters (an ES module's exports are bound at evaluation).
 * Its types are therefore `import()` types, and its body a block, so that no name is global.
 */
/* eslint-disable @typescript-eslint/consistent-type-imports, @typescript-eslint/no-require-imports -- see above */
{
  type Loaders = { [Name in keyof typeof import('./index')]: () => (typeof import('./index'))[Name] };

  const loaders: Loaders = {
    resourcePool: () => (require('./resource-pool') as typeof import('./resource-pool')).resourcePool,
    sanOperation: () => (require('./san-operation') as typeof import('./san-operation')).sanOperation,
    replicaRefresh: () => (require('./replica-refresh') as typeof import('./replica-refresh')).replicaRefresh,
    sanListing: () => (require('./san-listing') as typeof import('./san-listing')).sanListing,
    restore: () => (require('./restore') as typeof import('./restore')).restore,
    fleetProtection: () => (require('./fleet-protection') as typeof import('./fleet-protection')).fleetProtection,
    onlineBackup: () => (require('./online-backup') as typeof import('./online-backup')).onlineBackup,
    vmGuardian: () => (require('./vm-guardian') as typeof import('./vm-guardian')).vmGuardian,
    recoveryLadder: () => (require('./recovery-ladder') as typeof import('./recovery-ladder')).recoveryLadder,
    catalogRebuild: () => (require('./catalog-rebuild') as typeof import('./catalog-rebuild')).catalogRebuild,
    vmDataBackup: () => (require('./vm-requests') as typeof import('./vm-requests')).vmDataBackup,
    vmFailureReport: () => (require('./vm-requests') as typeof import('./vm-requests')).vmFailureReport,
    remoteCopy: () => (require('./remote-copy') as typeof import('./remote-copy')).remoteCopy,
    remoteOperation: () => (require('./remote-operation') as typeof import('./remote-operation')).remoteOperation,
    storeBackup: () => (require('./store') as typeof import('./store')).storeBackup,
    storeVerify: () => (require('./store') as typeof import('./store')).storeVerify,
    storePrune: () => (require('./store') as typeof import('./store')).storePrune,
    storeGc: () => (require('./store') as typeof import('./store')).storeGc,
    storeSync: () => (require('./store') as typeof import('./store')).storeSync,
    classBackup: () => (require('./store') as typeof import('./store')).classBackup,
    vmImageRestore: () => (require('./store') as typeof import('./store')).vmImageRestore,
    restoreDrill: () => (require('./drill') as typeof import('./drill')).restoreDrill,
    estateReport: () => (require('./drill') as typeof import('./drill')).estateReport,
    storeToTape: () => (require('./store-to-tape') as typeof import('./store-to-tape')).storeToTape,
  };

  for (const [name, get] of Object.entries(loaders)) Object.defineProperty(exports, name, { enumerable: true, get });
}
