/** The baseline of the orchestration benchmark: a workflow that does nothing and returns. */
export async function emptyWorkflow(): Promise<void> {
  return;
}
