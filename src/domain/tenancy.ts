/**
 * Companies sharing one SAN (seed 003's internet data centre): who owns each LUN (the company of
 * the array port it is presented on), which company each host and backup server serves, and the
 * access rule that keeps them apart — a company's servers read only its own LUNs, through its own
 * zones, and its backups are restored only onto its own volumes (docs/adr/031).
 */
import { AccessDeniedError } from './errors';
import type { Site, Tenant } from './inventory';

/** The company owning a LUN, and the host address (port + LUN) it is presented at. */
export interface LunOwner {
  company: string;
  array: string;
  volume: string;
  lun: number;
  port: string;
  portWwn: string;
}

/** The company a host or backup server serves, if the site lists it under one. */
export function companyOf(site: Site, initiator: string): Tenant | undefined {
  return site.tenants.find((t) => t.hosts.includes(initiator) || t.servers.includes(initiator));
}

/**
 * The company owning a volume: the owner of an array port the volume is presented on. Undefined
 * when the site has no companies or the volume is on no company's port.
 */
export function lunOwner(site: Site, array: string, volume: string): LunOwner | undefined {
  const a = site.arrays.find((x) => x.name === array);
  if (!a) return undefined;
  for (const m of a.lunMasks) {
    if (m.volume !== volume || m.port === undefined) continue;
    const owner = site.tenants.find((t) => t.ports.includes(`${array}/${m.port}`));
    const port = a.ports.find((p) => p.name === m.port);
    if (owner && port)
      return { company: owner.name, array, volume, lun: m.lun, port: m.port, portWwn: port.wwn.toLowerCase() };
  }
  return undefined;
}

/** `LUN 3 (array-01/b-db on port CL1-B)`: a LUN as an operator finds it on the array. */
export function describeLun(o: LunOwner): string {
  return `LUN ${o.lun} (${o.array}/${o.volume} on port ${o.array}/${o.port})`;
}

/**
 * Seed 003's zoning and LUN security for a company's request: AccessDeniedError unless the backup
 * server serves the company owning the volume, and (when that company has zones) one of its zones
 * holds both the server's WWN and the port the LUN is presented on. The message names the
 * requesting server and its company, and the LUN and its owner. A site without companies, or a
 * volume on no company's port, passes (the LUN mask alone then decides).
 */
export function checkCompanyAccess(site: Site, req: { array: string; volume: string; server: string }): void {
  if (site.tenants.length === 0) return;
  const owner = lunOwner(site, req.array, req.volume);
  if (!owner) return;
  const requester = companyOf(site, req.server);
  const details = {
    site: site.name,
    array: req.array,
    volume: req.volume,
    server: req.server,
    company: requester?.name ?? null,
    owner: owner.company,
  };
  if (requester?.name !== owner.company) {
    const who = requester
      ? `backup server ${req.server} of company ${requester.name}`
      : `backup server ${req.server}, which serves no company`;
    throw new AccessDeniedError(
      `${who} may not read ${describeLun(owner)}: it belongs to company ${owner.company}; nothing was copied. Back it up through a server of ${owner.company}`,
      details,
    );
  }
  const zones = requester.zones;
  if (zones.length === 0) return;
  const wwn = serverWwn(site, req.server);
  const zoned = wwn !== undefined && zones.some((z) => has(z.members, wwn) && has(z.members, owner.portWwn));
  if (!zoned)
    throw new AccessDeniedError(
      `no zone of company ${owner.company} holds backup server ${req.server}${wwn ? ` (${wwn})` : ''} together with port ${owner.array}/${owner.port} (${owner.portWwn}), where ${describeLun(owner)} is presented; add both WWNs to one of its zones in kura.yaml`,
      details,
    );
}

/**
 * The backup servers that may copy a volume a company owns: that company's own, admitted by the
 * volume's LUN masks and zoned with its port. Undefined when no company owns it: then any server
 * may be given a stream, and one the mask does not admit is refused where it touches the volume
 * (its copy goes on another stream, as for a device fault that is not the device's).
 */
export function serversFor(site: Site, array: string, volume: string): string[] | undefined {
  return accessPlan(site, array, volume)
    ?.servers.filter((s) => s.refused === undefined)
    .map((s) => s.name);
}

/**
 * Step 2's findings on who may copy a company's volume: every backup server of the site, each with
 * the reason it is refused (its company, its zones, the LUN mask), so step 3 plans the copy — and
 * refuses it — without another round trip. Undefined for a volume no company owns.
 */
export interface SanAccessPlan {
  owner: string;
  servers: { name: string; refused?: string }[];
}

/** The access plan of a volume a company owns, or undefined. */
export function accessPlan(site: Site, array: string, volume: string): SanAccessPlan | undefined {
  const owner = lunOwner(site, array, volume);
  if (!owner) return undefined;
  const masks = site.arrays.find((a) => a.name === array)?.lunMasks.filter((m) => m.volume === volume) ?? [];
  const admitted = new Set(masks.flatMap((m) => m.wwns.map((w) => w.toLowerCase())));
  return {
    owner: owner.company,
    servers: site.servers.map((s) => {
      try {
        checkCompanyAccess(site, { array, volume, server: s.name });
      } catch (err) {
        return { name: s.name, refused: (err as Error).message };
      }
      const wwn = s.wwn?.toLowerCase();
      if (wwn === undefined || !admitted.has(wwn))
        return {
          name: s.name,
          refused: `the LUN mask of ${describeLun(owner)} does not include backup server ${s.name}${wwn ? ` (${wwn})` : ''} of company ${owner.company}; add its WWN to the mask in kura.yaml`,
        };
      return { name: s.name };
    }),
  };
}

/**
 * A restore of a backup of `from` onto `to`: AccessDeniedError when the two volumes belong to
 * different companies (or `to` belongs to a company and `from` to none), naming both.
 */
export function checkRestoreOwnership(
  site: Site,
  backup: { backupId: string; array: string; volume: string },
  to: { array: string; volume: string },
): void {
  const dest = lunOwner(site, to.array, to.volume);
  if (!dest) return;
  const source = lunOwner(site, backup.array, backup.volume);
  if (source?.company === dest.company) return;
  throw new AccessDeniedError(
    `backup ${backup.backupId} is of ${source ? `company ${source.company}` : `${backup.array}/${backup.volume}, which no company owns`}, and may not be restored onto ${describeLun(dest)} of company ${dest.company}; nothing was written. Restore it to a new file or volume of ${source?.company ?? 'its own'}`,
    {
      site: site.name,
      backupId: backup.backupId,
      company: source?.company ?? null,
      owner: dest.company,
      array: to.array,
      volume: to.volume,
    },
  );
}

/** One LUN as a host sees it: the LDEV behind it, the port and LUN number, and who owns it. */
export interface HostLun {
  array: string;
  ldev: string;
  port: string | null;
  portWwn: string | null;
  lun: number;
  owner: string | null;
}

/** What `kura san show` lists for each host and backup server. */
export interface SanHostView {
  name: string;
  kind: 'host' | 'server';
  wwn: string | null;
  company: string | null;
  luns: HostLun[];
  zones: string[];
}

export interface SanMaskView {
  array: string;
  ldev: string;
  port: string | null;
  lun: number;
  owner: string | null;
  wwns: string[];
}

export interface SanZoneView {
  company: string;
  name: string;
  members: string[];
}

/** The site's SAN as its configuration sets it: per host the LUNs it sees, the zones and the masks. */
export interface SanView {
  site: string;
  hosts: SanHostView[];
  zones: SanZoneView[];
  masks: SanMaskView[];
}

/** Builds the SAN view of a site: LDEV → port + LUN per host, the zones and the LUN masks. */
export function sanView(site: Site): SanView {
  const masks: SanMaskView[] = site.arrays.flatMap((a) =>
    a.lunMasks.map((m) => ({
      array: a.name,
      ldev: m.volume,
      port: m.port ?? null,
      lun: m.lun,
      owner: lunOwner(site, a.name, m.volume)?.company ?? null,
      wwns: m.wwns.map((w) => w.toLowerCase()),
    })),
  );
  const zones: SanZoneView[] = site.tenants.flatMap((t) =>
    t.zones.map((z) => ({ company: t.name, name: z.name, members: z.members.map((w) => w.toLowerCase()) })),
  );
  const portWwn = (array: string, port: string | null) =>
    port === null ? null : (site.arrays.find((a) => a.name === array)?.ports.find((p) => p.name === port)?.wwn ?? null);
  const initiators = [
    ...site.hosts.map((h) => ({ name: h.name, kind: 'host' as const, wwn: h.wwn?.toLowerCase() ?? null })),
    ...site.servers.map((s) => ({ name: s.name, kind: 'server' as const, wwn: s.wwn?.toLowerCase() ?? null })),
  ];
  const hosts = initiators.map((i) => ({
    ...i,
    company: companyOf(site, i.name)?.name ?? null,
    luns: masks
      .filter((m) => i.wwn !== null && m.wwns.includes(i.wwn))
      .map((m) => ({
        array: m.array,
        ldev: m.ldev,
        port: m.port,
        portWwn: portWwn(m.array, m.port)?.toLowerCase() ?? null,
        lun: m.lun,
        owner: m.owner,
      })),
    zones: zones.filter((z) => i.wwn !== null && z.members.includes(i.wwn)).map((z) => z.name),
  }));
  return { site: site.name, hosts, zones, masks };
}

function serverWwn(site: Site, server: string): string | undefined {
  return site.servers.find((s) => s.name === server)?.wwn?.toLowerCase();
}

function has(members: string[], wwn: string): boolean {
  return members.some((m) => m.toLowerCase() === wwn);
}
