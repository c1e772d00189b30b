/**
 * The failure converter of every Kura client, worker and workflow bundle: failure messages and stack
 * traces travel as an encoded payload, so the payload codec encrypts them too (a failure names the
 * VM, the volume or the path it is about). Loaded by path, because the workflow sandbox needs it.
 */
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
