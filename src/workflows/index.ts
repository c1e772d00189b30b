/** Every workflow Kura registers, re-exported by name. */
export { resourcePool } from './resource-pool';
export { sanOperation } from './san-operation';
export { replicaRefresh } from './replica-refresh';
export { sanListing } from './san-listing';
export { restore } from './restore';
export { fleetProtection } from './fleet-protection';
export { onlineBackup } from './online-backup';
export { vmGuardian } from './vm-guardian';
export { recoveryLadder } from './recovery-ladder';
export { catalogRebuild } from './catalog-rebuild';
export { vmDataBackup, vmFailureReport } from './vm-requests';
export { remoteCopy } from './remote-copy';
export { remoteOperation } from './remote-operation';
export { storeBackup, storeVerify, storePrune, storeGc, storeSync, classBackup, vmImageRestore } from './store';
export { restoreDrill, estateReport } from './drill';
export { storeToTape } from './store-to-tape';
