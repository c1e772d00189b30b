/** Every workflow Kura registers, re-exported by name. */
export { resourcePool } from './resourcePool';
export { sanOperation } from './sanOperation';
export { restore } from './restore';
export { fleetProtection } from './fleetProtection';
export { onlineBackup } from './onlineBackup';
export { vmGuardian } from './vmGuardian';
export { recoveryLadder } from './recoveryLadder';
