/**
 * Checks docker-compose.yml and the Dockerfile it builds without Docker: the services a user needs
 * exist, are wired to each other, and every variable has a default so `docker compose up -d` works
 * with no .env file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { KURA_SEARCH_ATTRIBUTES, searchAttributeTypeName } from '../../src/search-attributes';

const repoRoot = path.resolve(__dirname, '..', '..');
const composeText = fs.readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8');

interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  depends_on?: string[] | Record<string, { condition?: string }>;
  environment?: string[] | Record<string, string | number | boolean | null>;
  ports?: (string | number | { published?: string | number; target?: number })[];
  command?: string | string[];
}

const compose = parse(composeText, { uniqueKeys: true }) as { services?: Record<string, Service> };
const services = compose.services ?? {};

function service(name: string): Service {
  const found = services[name];
  if (!found) throw new Error(`docker-compose.yml has no service "${name}"`);
  return found;
}

function dependencies(s: Service): string[] {
  if (!s.depends_on) return [];
  return Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on);
}

function environment(s: Service): Record<string, string> {
  if (!s.environment) return {};
  if (Array.isArray(s.environment)) {
    return Object.fromEntries(
      s.environment.map((entry) => {
        const eq = entry.indexOf('=');
        return eq < 0 ? [entry, ''] : [entry.slice(0, eq), entry.slice(eq + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(s.environment).map(([k, v]) => [k, String(v ?? '')]));
}

/** Host ports a service publishes, from both the short ("7233:7233") and the long syntax. */
function publishedPorts(s: Service): string[] {
  return (s.ports ?? []).map((p) => {
    if (typeof p === 'object') return String(p.published ?? '');
    const parts = String(p).split(':');
    return parts.length > 1 ? (parts.at(-2) ?? '') : '';
  });
}

/**
 * Variable references Compose would interpolate without a default: `${VAR}` (but not `${VAR:-x}`,
 * `${VAR-x}`, or the escaped `$${VAR}`) and bare `$VAR`.
 */
function referencesWithoutDefault(text: string): string[] {
  const braced = [...text.matchAll(/(?<!\$)\$\{([^}]*)\}/g)]
    .filter((m) => !/^[A-Za-z_][A-Za-z0-9_]*:?-/.test(m[1] ?? ''))
    .map((m) => m[0]);
  const bare = [...text.matchAll(/(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[0]);
  return [...braced, ...bare];
}

/** Every key and string value of a parsed document: what Compose interpolates (comments are not). */
function stringsIn(node: unknown): string[] {
  if (typeof node === 'string') return [node];
  if (Array.isArray(node)) return node.flatMap(stringsIn);
  if (node && typeof node === 'object') {
    return Object.entries(node).flatMap(([key, value]) => [key, ...stringsIn(value)]);
  }
  return [];
}

/** The last CMD or ENTRYPOINT instruction of a Dockerfile, which is the one that takes effect. */
function lastRunInstruction(dockerfile: string): string | undefined {
  return dockerfile
    .split('\n')
    .filter((line) => /^\s*(CMD|ENTRYPOINT)\s/i.test(line))
    .at(-1);
}

describe('docker-compose.yml', () => {
  it('defines the postgresql, temporal, temporal-ui and kura-worker services', () => {
    expect(Object.keys(services)).toEqual(
      expect.arrayContaining(['postgresql', 'temporal', 'temporal-ui', 'kura-worker']),
    );
  });

  it('starts temporal only after postgresql, on the Postgres persistence', () => {
    const temporal = service('temporal');
    expect(dependencies(temporal)).toContain('postgresql');
    expect(environment(temporal).DB).toBe('postgres12');
    expect(environment(temporal).POSTGRES_SEEDS).toBe('postgresql');
  });

  it('points the UI and the worker at temporal:7233', () => {
    expect(environment(service('temporal-ui')).TEMPORAL_ADDRESS).toBe('temporal:7233');
    expect(environment(service('kura-worker')).TEMPORAL_ADDRESS).toBe('temporal:7233');
  });

  it('publishes the frontend on port 7233 and the UI on port 8080', () => {
    expect(publishedPorts(service('temporal'))).toContain('7233');
    expect(publishedPorts(service('temporal-ui'))).toContain('8080');
  });

  it.each(KURA_SEARCH_ATTRIBUTES.map((key) => [key.name, searchAttributeTypeName(key)]))(
    'registers the search attribute %s as %s, as the code does',
    (name, type) => {
      const script = [service('temporal-admin-tools').command ?? []].flat().join('\n');
      expect(script).toMatch(new RegExp(`search-attribute create [^;]*--name ${name} --type ${type}\\b`));
    },
  );

  it('gives every variable reference a default, so it runs without a .env file', () => {
    expect(stringsIn(compose).flatMap(referencesWithoutDefault)).toEqual([]);
  });

  it('builds the worker from a Dockerfile of this repository that runs src/worker.ts', () => {
    const build = service('kura-worker').build;
    const context = typeof build === 'string' ? build : (build?.context ?? '.');
    const dockerfileName = typeof build === 'object' ? (build.dockerfile ?? 'Dockerfile') : 'Dockerfile';
    const dockerfilePath = path.resolve(repoRoot, context, dockerfileName);
    expect(build).toBeDefined();
    expect(fs.existsSync(dockerfilePath)).toBe(true);
    expect(lastRunInstruction(fs.readFileSync(dockerfilePath, 'utf8'))).toMatch(/src\/worker\.ts/);
  });
});

describe('docker-compose.yml, the cluster topology', () => {
  const servers: [string, string][] = [
    ['temporal', 'frontend'],
    ['temporal-history-1', 'history'],
    ['temporal-history-2', 'history'],
    ['temporal-matching', 'matching'],
    ['temporal-worker', 'worker'],
  ];

  it.each(servers)('runs %s as the %s service alone, on Postgres, once the schemas are set up', (name, role) => {
    const s = service(name);
    expect(s.image).toBe('temporalio/server:1.29.1');
    expect(environment(s).SERVICES).toBe(role);
    expect(environment(s).DB).toBe('postgres12');
    expect(environment(s).POSTGRES_SEEDS).toBe('postgresql');
    expect(dependencies(s)).toEqual(expect.arrayContaining(['postgresql', 'temporal-schema']));
    expect((s.depends_on as Record<string, { condition?: string }>)['temporal-schema']?.condition).toBe(
      'service_completed_successfully',
    );
  });

  it('gives every server process the same number of history shards and the frontend to call', () => {
    const shards = servers.map(([name]) => environment(service(name)).NUM_HISTORY_SHARDS);
    expect(new Set(shards).size).toBe(1);
    expect(shards[0]).toMatch(/^\$\{TEMPORAL_HISTORY_SHARDS:-\d+\}$/);
    for (const [name] of servers) expect(environment(service(name)).PUBLIC_FRONTEND_ADDRESS).toBe('temporal:7233');
  });

  it('sets up the temporal and visibility schemas with temporal-sql-tool against postgresql', () => {
    const schema = service('temporal-schema');
    expect(environment(schema).SQL_PLUGIN).toBe('postgres12');
    expect(environment(schema).SQL_HOST).toBe('postgresql');
    const script = [schema.command ?? []].flat().join('\n');
    expect(script).toMatch(/for db in temporal temporal_visibility/);
    expect(script).toMatch(/temporal-sql-tool --db \$\$db update-schema -d \/etc\/temporal\/schema\/postgresql\/v12\//);
  });

  it('registers the default namespace before the search attributes', () => {
    const script = [service('temporal-admin-tools').command ?? []].flat().join('\n');
    const namespace = script.indexOf('operator namespace create --namespace default');
    expect(namespace).toBeGreaterThan(-1);
    expect(namespace).toBeLessThan(script.indexOf('search-attribute create'));
  });
});

describe('the compose checks themselves', () => {
  it('report a reference without a default and accept defaults and escapes', () => {
    const text = 'a: ${NO_DEFAULT}\nb: ${WITH:-x}\nc: ${ALSO-y}\nd: $${ESCAPED}\ne: $BARE\n';
    expect(referencesWithoutDefault(text)).toEqual(['${NO_DEFAULT}', '$BARE']);
  });

  it('take the last CMD of a Dockerfile as the one that runs', () => {
    const dockerfile = 'FROM x\nCMD ["node", "old.js"]\nCMD ["tsx", "src/worker.ts"]\n';
    expect(lastRunInstruction(dockerfile)).toBe('CMD ["tsx", "src/worker.ts"]');
  });
});
