/**
 * Ends a test run with one plain line, `tests: N passed, N failed, N skipped`, that any tool can
 * read without knowing vitest's own output format.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const failedFiles: string[] = [];
    for (const m of testModules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      // A file that failed outside its tests (failed to load, or a beforeAll threw and its tests were
      // skipped) is a failure all the same, and is named.
      if (m.state() === 'failed' && ![...m.children.allTests()].some((t) => t.result().state === 'failed')) {
        failed++;
        failedFiles.push(m.moduleId);
      }
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    for (const f of failedFiles) process.stdout.write(`failed outside its tests: ${f}\n`);
  }
}
