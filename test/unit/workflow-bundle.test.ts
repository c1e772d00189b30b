/**
 * What the workflow bundle evaluates for every workflow a worker starts (docs/adr/045): kura.yaml's
 * schema is not part of it, since each workflow evaluates the bundle's modules again and that
 * schema was about a fifth of a backup's CPU on the workflow thread.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, inject, it } from 'vitest';

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
});
