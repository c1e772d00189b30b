/**
 * The installation: the id (kura.yaml `installation`) that keeps one estate's work apart from
 * another's on a shared Temporal namespace. It is part of every task queue and workflow id of the
 * installation, and every workflow and activity carries it (docs/adr/027-installations.md).
 */
import { z } from 'zod';

/**
 * The installation of a kura.yaml that names none. Its task queues and ids are those Kura used
 * before installations existed, so a configuration and the workflows it left running keep working.
 */
export const DEFAULT_INSTALLATION = 'default';

/** A short id of lowercase letters, digits and inner dashes: it goes into task queue names and workflow ids. */
export const INSTALLATION_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/;

export const InstallationSchema = z
  .string()
  .regex(
    INSTALLATION_PATTERN,
    'an installation id is 1 to 32 lowercase letters, digits and dashes, starting and ending with a letter or digit (e.g. 3f9c2a71)',
  );
export type Installation = z.infer<typeof InstallationSchema>;

/**
 * What a worker says when it refuses work of another installation: both ids, and what to do.
 * `what` names the work (`workflow op/backup/vm-001/… (sanOperation)`, `activity copyPiece`).
 */
export function wrongInstallationMessage(what: string, workInstallation: string, workerInstallation: string): string {
  return (
    `${what} belongs to installation ${workInstallation}, but this worker serves installation ${workerInstallation}; ` +
    `nothing was done. Start the work with the client of installation ${workInstallation} (its kura.yaml), ` +
    `on its own task queue, or run a worker of installation ${workInstallation}`
  );
}
