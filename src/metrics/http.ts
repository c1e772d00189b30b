/**
 * Serves a prom-client registry as Prometheus' text exposition on `GET /metrics`, on 127.0.0.1
 * only: the figures name targets and volumes, so they are for a local scraper (or one behind a
 * proxy the operator chooses), not the network.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsEndpoint {
  /** The port it listens on (the one asked for, or the one the system chose for 0). */
  port: number;
  /** `http://127.0.0.1:<port>/metrics`. */
  url: string;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1:`port` (0: any free port) and answers `GET /metrics` with the registry's
 * exposition; every other path is a 404. Rejects when the port is taken.
 */
export async function serveMetrics(registry: Registry, port: number): Promise<MetricsEndpoint> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? '' : text),
      (err: unknown) =>
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`metrics could not be collected: ${err instanceof Error ? err.message : String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    url: `http://127.0.0.1:${bound}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A scraper's keep-alive connection must not keep the server, and so the process, alive.
        server.closeAllConnections();
      }),
  };
}
