// Lint rules the project holds to: promises are awaited, type-only imports stay type-only,
// no import cycles, workflow code cannot reach Node built-ins (it must stay deterministic), and the
// layers point one way: workflows import no I/O code, activities no workflow code, drivers nothing
// above them, and the CLI neither activities nor drivers (it starts workflows through the client).
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { builtinModules } from 'node:module';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

/** A pattern matching relative imports of these top-level folders (or files) of src, at any depth. */
const layers = (...names) => `^(\\.\\./)+(${names.join('|')})(/|$)`;

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tools/**', '.kura/**', 'coverage/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver': { node: { extensions: ['.ts', '.js'] } } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'separate-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import-x/no-cycle': ['error', { maxDepth: 10 }],
    },
  },
  {
    files: ['src/workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({ name, message: 'Workflow code must be deterministic: no Node built-ins.' })),
          patterns: [
            {
              regex: layers('activities', 'drivers', 'catalog', 'lab', 'datapath', 'stack', 'images', 'config/load'),
              allowTypeImports: true,
              message:
                'Workflows orchestrate; I/O happens in activities. Import activities with `import type` and call them through proxyActivities; pure shapes live in src/domain.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/activities/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: layers('workflows'),
              allowTypeImports: true,
              message: 'Activities never run workflow code; `import type` a workflow to type a handle.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/drivers/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: layers('workflows', 'activities', 'api', 'cli', 'client', 'worker', 'catalog', 'datapath', 'images'),
              message: 'Drivers know nothing of the layers above them (Temporal, the catalog, the image store).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/cli/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          // src/lab stays allowed: `kura lab …` and `kura start` set up the lab estate itself.
          patterns: [
            {
              regex: layers('activities', 'drivers'),
              message: 'The CLI starts workflows through the client (src/api); activities and drivers run in workers.',
            },
          ],
        },
      ],
    },
  },
);
