/**
 * What the workflow bundle evaluates for every workflow a worker starts (docs/adr/045): kura.yaml's
 * schema is not part of it, since each workflow evaluates the bundle's modules again and that
 * schema was about a fifth of a backup's CPU on the workflow thread.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, inject, it } from 'vitest';
import * as workflows from '../../src/workflows/index';

/** The code webpack made of one source module: from its id to the next module's. */
function moduleCode(id: string): string {
  const code = readFileSync(inject('workflowBundlePath'), 'utf8');
  const start = code.indexOf(`/***/ "${id}"\n`);
  expect(start, `${id} is in the bundle`).toBeGreaterThanOrEqual(0);
  const end = code.indexOf('/***/ "', start + 1);
  return code.slice(start, end < 0 ? undefined : end);
}

/** The source modules of the bundle, by the ids webpack gives them. */
function bundledModules(): string[] {
  const code = readFileSync(inject('workflowBundlePath'), 'utf8');
  return [...new Set([...code.matchAll(/"(\.\/src\/[^"]+\.ts)"/g)].map((m) => m[1] as string))];
}

describe('the workflow bundle', () => {
  it('holds the name rule the workflows check names with, but not the configuration schema', () => {
    const modules = bundledModules();
    expect(modules).toContain('./src/domain/names.ts');
    expect(modules).toContain('./src/workflows/san-operation.ts');
    expect(modules).not.toContain('./src/domain/inventory.ts');
  });

  it('starts from an entry that evaluates each workflow module only when its workflow is looked up', () => {
    const entry = moduleCode('./src/workflows/bundle-entry.ts');
    // A CommonJS module (its exports can be getters), not an ES module bound at evaluation.
    expect(entry).toContain('(__unused_webpack_module, exports, __webpack_require__) {');
    expect(entry).not.toContain('__webpack_require__.r(');
    // Every require of a workflow module sits in a loader, one loader per workflow the index exports.
    const requires = [...entry.matchAll(/__webpack_require__\(/g)].length;
    const loaders = [...entry.matchAll(/^\s+(\w+): \(\)=>\(__webpack_require__\(/gm)].map((m) => m[1]);
    expect(loaders.sort()).toEqual(Object.keys(workflows).sort());
    expect(requires).toBe(loaders.length);
  });
});
