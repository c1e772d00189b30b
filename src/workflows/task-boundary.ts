/**
 * The end of a workflow task on purpose: the local activities run before it are recorded in the
 * history before any run after it begins (docs/adr/047).
 */
import { sleep } from '@temporalio/workflow';

/**
 * Ends the current workflow task: a one-millisecond timer makes the worker complete the task
 * (recording the markers of the local activities run so far), and its firing makes the server start
 * a new one; it costs one more workflow task and no activity task. Local activities of one task are run again together
 * from the task's start when the task is lost (its worker dies before completing it); a step that
 * takes away what an earlier step of the same task needs (a release after an unload, an unload
 * after a write) must come after such a boundary, or the re-run finds its precondition gone.
 */
export async function endWorkflowTask(): Promise<void> {
  await sleep(1);
}
