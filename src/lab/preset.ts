/**
 * Lab presets: generated inventories that `kura lab init` writes as kura.yaml, starting with the
 * hospital of seed 000 (77 VMs) wired for the two independent backup streams of seed 004.
 */
import { Document, isMap, isSeq, visit } from 'yaml';
import type { ConfigInput } from '../domain/inventory';
import { InvalidInputError } from '../domain/errors';

export const presetNames = { hospital: 'hospital', idc: 'idc' } as const;
export type PresetName = (typeof presetNames)[keyof typeof presetNames];

export interface HospitalPresetOptions {
  /** VMs, each with a software and a data volume (77). */
  vms?: number;
  /** Hypervisor hosts the VMs are spread over (8). */
  hosts?: number;
  /** Bytes of each data volume (8 MiB). */
  dataVolumeSize?: number;
  /** Bytes of each software volume (4 MiB). */
  softwareVolumeSize?: number;
  /** Bytes each cartridge holds (4 GiB). */
  cartridgeCapacity?: number;
  /** Cartridges in each of the two libraries (20). */
  cartridgesPerLibrary?: number;
  /** Drives in each of the two libraries (4: a job takes one in each, so four jobs run at once). */
  drivesPerLibrary?: number;
  /** The site's name ('hospital'). */
  site?: string;
  /**
   * File servers of the `server` class, each with one large volume on array-01 (none; `kura lab
   * init` and `kura start` make 4). With file servers or clients the preset gains `classes`.
   */
  fileServers?: number;
  /** Bytes of each file server's volume (16 MiB: twice a VM's data volume). */
  fileServerVolumeSize?: number;
  /** Special clients of the `client` class, each with an OS volume on array-01 (none; `kura lab init` makes 6). */
  clients?: number;
  /** Bytes of each client's OS volume (4 MiB). */
  clientVolumeSize?: number;
}

/** What `kura lab init` and `kura start` add to the hospital beside its VMs (seed 000's other classes). */
export const HOSPITAL_ESTATE = { fileServers: 4, clients: 6 } as const;

const MiB = 1024 * 1024;

/** The key file a preset names, beside kura.yaml (docs/adr/024). */
export const LAB_KEY_FILE = 'kura-keys.json';

/**
 * The hospital estate: hosts host-01…, VMs vm-001… with a software and a data volume each on
 * array-01, two backup servers, two libraries of four drives, two FC switches and two copy
 * devices, cabled as two fully independent paths (…-01 on fcsw-01, …-02 on fcsw-02) so a job
 * can always secure two streams that share nothing but the array.
 */
export function hospitalPreset(opts: HospitalPresetOptions = {}): ConfigInput {
  const vms = positiveInt(opts.vms ?? 77, 'vms');
  const hosts = positiveInt(opts.hosts ?? 8, 'hosts');
  const dataSize = positiveInt(opts.dataVolumeSize ?? 8 * MiB, 'dataVolumeSize');
  const swSize = positiveInt(opts.softwareVolumeSize ?? 4 * MiB, 'softwareVolumeSize');
  const capacity = positiveInt(opts.cartridgeCapacity ?? 4 * 1024 * MiB, 'cartridgeCapacity');
  const perLibrary = positiveInt(opts.cartridgesPerLibrary ?? 20, 'cartridgesPerLibrary');
  const drives = positiveInt(opts.drivesPerLibrary ?? 4, 'drivesPerLibrary');
  const site = opts.site ?? presetNames.hospital;

  const vmWidth = Math.max(3, String(vms).length);
  const hostWidth = Math.max(2, String(hosts).length);
  const tapeWidth = Math.max(3, String(perLibrary).length);
  const pad = (n: number, w: number) => String(n).padStart(w, '0');

  const serverWwns = ['21:00:00:24:ff:4b:00:01', '21:00:00:24:ff:4b:00:02'];
  const hostList = Array.from({ length: hosts }, (_, i) => ({ name: `host-${pad(i + 1, hostWidth)}` }));
  const vmNames = Array.from({ length: vms }, (_, i) => `vm-${pad(i + 1, vmWidth)}`);
  const fileServers = Array.from(
    { length: nonNegativeInt(opts.fileServers ?? 0, 'fileServers') },
    (_, i) => `fs-${pad(i + 1, 2)}`,
  );
  const clients = Array.from({ length: nonNegativeInt(opts.clients ?? 0, 'clients') }, (_, i) => `cl-${pad(i + 1, 2)}`);
  const fsSize = positiveInt(opts.fileServerVolumeSize ?? 16 * MiB, 'fileServerVolumeSize');
  const clientSize = positiveInt(opts.clientVolumeSize ?? 4 * MiB, 'clientVolumeSize');
  const volumes = [
    ...vmNames.flatMap((vm) => [
      { id: `${vm}-sw`, size: sizeText(swSize) },
      { id: `${vm}-data`, size: sizeText(dataSize) },
    ]),
    ...fileServers.map((fs) => ({ id: `${fs}-data`, size: sizeText(fsSize) })),
    ...clients.map((cl) => ({ id: `${cl}-os`, size: sizeText(clientSize) })),
  ];
  // Seed 000's three classes, each with its method, schedule and retention in the store.
  const retention = { keepLast: 7, keepDaily: 7, keepWeekly: 4, keepMonthly: 6 };
  const classes =
    fileServers.length + clients.length === 0
      ? {}
      : {
          // Small chunks for the lab's small volumes, so `kura lab churn --percent 5` changes about 5 %.
          store: { chunkSize: '256KiB' },
          classes: {
            vm: { method: 'image' as const, schedule: '01:00', retention },
            server: {
              method: 'incremental' as const,
              schedule: '22:00',
              retention,
              targets: fileServers.map((fs) => ({ name: fs, volume: `array-01/${fs}-data` })),
            },
            client: {
              method: 'image' as const,
              schedule: '12:15',
              window: { from: '12:00', to: '13:00' },
              retention,
              targets: clients.map((cl) => ({ name: cl, volume: `array-01/${cl}-os` })),
            },
          },
        };

  return {
    version: 1,
    home: '.kura',
    restoreRoots: ['restores'],
    // Encryption is on from the first start: `kura start` and `kura lab init` create this file.
    security: { keyFile: LAB_KEY_FILE },
    sites: [
      {
        name: site,
        hosts: hostList,
        vms: vmNames.map((vm, i) => ({
          name: vm,
          host: hostList[i % hosts]?.name ?? 'host-01',
          softwareVolume: `array-01/${vm}-sw`,
          dataVolume: `array-01/${vm}-data`,
        })),
        arrays: [
          {
            name: 'array-01',
            ports: [
              { name: 'array-01-p0', wwn: '50:06:0e:80:00:00:00:01' },
              { name: 'array-01-p1', wwn: '50:06:0e:80:00:00:00:02' },
            ],
            volumes,
            // Seed 003's LUN security: every volume is visible to both backup servers and no one else.
            lunMasks: volumes.map((v, lun) => ({ volume: v.id, lun, wwns: serverWwns })),
            // Room for replicas and snapshots of a few volumes at once (seed 003's free volumes).
            freePool: { size: sizeText(4 * Math.max(dataSize, swSize)), replicas: 4 },
          },
        ],
        libraries: [1, 2].map((l) => ({
          name: `lib-0${l}`,
          drives: Array.from({ length: drives }, (_, d) => ({ id: `lib-0${l}-drv-${d + 1}` })),
          cartridges: Array.from({ length: perLibrary }, (_, t) => ({
            id: `L${l}T${pad(t + 1, tapeWidth)}`,
            capacity: sizeText(capacity),
          })),
        })),
        switches: [
          { name: 'fcsw-01', capacity: 4 },
          { name: 'fcsw-02', capacity: 4 },
        ],
        servers: [
          // A server copies one stream per drive of the library behind it.
          { name: 'bks-01', wwn: serverWwns[0], capacity: drives },
          { name: 'bks-02', wwn: serverWwns[1], capacity: drives },
        ],
        copyDevices: [{ name: 'cpd-01' }, { name: 'cpd-02' }],
        links: [
          ['array-01', 'fcsw-01'],
          ['array-01', 'fcsw-02'],
          ['bks-01', 'fcsw-01'],
          ['bks-02', 'fcsw-02'],
          ['lib-01', 'fcsw-01'],
          ['lib-02', 'fcsw-02'],
          ['cpd-01', 'fcsw-01'],
          ['cpd-02', 'fcsw-02'],
        ],
        policies: [{ name: 'nightly-data', targets: ['*'], nightly: '02:00', concurrency: 4 }],
      },
    ],
    ...classes,
  };
}

/**
 * Seed 003's internet data centre: two companies, a-corp and b-corp, share one array, one tape
 * library and the FC switches. Each has its own hosts, backup server, array ports (two each),
 * zone and LUNs, masked to its own WWNs; its web and application VMs back up on the seed's
 * nightly timetable (A's WWW 0:00, B's app 1:00, A's app 1:30, B's WWW 3:00). Options: `vms` is
 * ignored (two per company), `dataVolumeSize`, `softwareVolumeSize`, `cartridgeCapacity`,
 * `cartridgesPerLibrary`, `drivesPerLibrary` and `site` apply.
 */
export function idcPreset(opts: HospitalPresetOptions = {}): ConfigInput {
  const dataSize = positiveInt(opts.dataVolumeSize ?? 8 * MiB, 'dataVolumeSize');
  const swSize = positiveInt(opts.softwareVolumeSize ?? 4 * MiB, 'softwareVolumeSize');
  const capacity = positiveInt(opts.cartridgeCapacity ?? 4 * 1024 * MiB, 'cartridgeCapacity');
  const perLibrary = positiveInt(opts.cartridgesPerLibrary ?? 20, 'cartridgesPerLibrary');
  const drives = positiveInt(opts.drivesPerLibrary ?? 4, 'drivesPerLibrary');
  const site = opts.site ?? presetNames.idc;
  const tapeWidth = Math.max(3, String(perLibrary).length);

  // One WWN plan: 10:00 hosts, 21:00 backup servers, 50:06 array ports; the 7th byte is the company.
  const companies = [
    {
      name: 'a-corp',
      tag: 'a',
      n: 1,
      vms: [
        { vm: 'a-www', at: '00:00' },
        { vm: 'a-app', at: '01:30' },
      ],
    },
    {
      name: 'b-corp',
      tag: 'b',
      n: 2,
      vms: [
        { vm: 'b-app', at: '01:00' },
        { vm: 'b-www', at: '03:00' },
      ],
    },
  ].map((c) => ({
    ...c,
    host: { name: `${c.tag}-host-01`, wwn: `10:00:00:00:c9:00:0${c.n}:01` },
    server: { name: `bks-${c.tag}`, wwn: `21:00:00:24:ff:4b:0${c.n}:01` },
    ports: [1, 2].map((p) => ({ name: `cl${p}-${c.tag}`, wwn: `50:06:0e:80:00:00:0${c.n}:0${p}` })),
  }));

  let lun = 0;
  const volumes: { id: string; size: string | number }[] = [];
  const lunMasks: { volume: string; lun: number; wwns: string[]; port: string }[] = [];
  for (const c of companies)
    for (const { vm } of c.vms)
      for (const [kind, size] of [
        ['sw', swSize],
        ['data', dataSize],
      ] as const) {
        volumes.push({ id: `${vm}-${kind}`, size: sizeText(size) });
        // Seed 003's LUN security: the company's LUNs are presented on its own port, to its own WWNs.
        lunMasks.push({
          volume: `${vm}-${kind}`,
          lun: lun++,
          port: c.ports[0]?.name ?? '',
          wwns: [c.host.wwn, c.server.wwn],
        });
      }

  return {
    version: 1,
    home: '.kura',
    restoreRoots: ['restores'],
    security: { keyFile: LAB_KEY_FILE },
    // One backup server per company: each backup takes one stream, through its owner's server.
    tuning: { streams: 1 },
    sites: [
      {
        name: site,
        hosts: companies.map((c) => c.host),
        vms: companies.flatMap((c) =>
          c.vms.map(({ vm }) => ({
            name: vm,
            host: c.host.name,
            softwareVolume: `array-01/${vm}-sw`,
            dataVolume: `array-01/${vm}-data`,
          })),
        ),
        arrays: [
          {
            name: 'array-01',
            ports: companies.flatMap((c) => c.ports),
            volumes,
            lunMasks,
            freePool: { size: sizeText(4 * Math.max(dataSize, swSize)), replicas: 4 },
          },
        ],
        libraries: [
          {
            name: 'lib-01',
            drives: Array.from({ length: drives }, (_, d) => ({ id: `lib-01-drv-${d + 1}` })),
            cartridges: Array.from({ length: perLibrary }, (_, t) => ({
              id: `L1T${String(t + 1).padStart(tapeWidth, '0')}`,
              capacity: sizeText(capacity),
            })),
          },
        ],
        switches: [
          { name: 'fcsw-01', capacity: 4 },
          { name: 'fcsw-02', capacity: 4 },
        ],
        servers: companies.map((c) => ({ ...c.server, capacity: drives })),
        links: [
          ['array-01', 'fcsw-01'],
          ['array-01', 'fcsw-02'],
          ['bks-a', 'fcsw-01'],
          ['bks-b', 'fcsw-02'],
          ['lib-01', 'fcsw-01'],
          ['lib-01', 'fcsw-02'],
        ],
        policies: companies.flatMap((c) =>
          c.vms.map(({ vm, at }) => ({ name: `nightly-${vm}`, targets: [vm], nightly: at, concurrency: 1 })),
        ),
        tenants: companies.map((c) => ({
          name: c.name,
          hosts: [c.host.name],
          servers: [c.server.name],
          ports: c.ports.map((p) => `array-01/${p.name}`),
          zones: [{ name: `${c.tag}-zone`, members: [c.host.wwn, c.server.wwn, ...c.ports.map((p) => p.wwn)] }],
        })),
      },
    ],
  };
}

/** The preset of that name, or InvalidInputError listing the presets there are. */
export function presetByName(name: string, opts: HospitalPresetOptions = {}): ConfigInput {
  if (name === presetNames.hospital) return hospitalPreset(opts);
  if (name === presetNames.idc) return idcPreset(opts);
  throw new InvalidInputError(`there is no preset "${name}"; choose one of: ${Object.values(presetNames).join(', ')}`);
}

/**
 * Renders a configuration as kura.yaml: a header saying what the file is, then the settings,
 * with short records (volumes, VMs, links, cartridges) on one line each so the file stays readable.
 */
export function renderConfigYaml(cfg: ConfigInput): string {
  // No anchors/aliases: shared arrays (the LUN masks' WWN list) are written out at each use, which
  // is what a person editing the file expects, and keeps the alias-count guard of readers quiet.
  const doc = new Document(cfg, { aliasDuplicateObjects: false });
  const flat = (node: unknown) => !isMap(node) && !isSeq(node);
  visit(doc, {
    Map(_key, node, path) {
      const parent = path[path.length - 1];
      // A list item made of scalars and short scalar lists is one record: keep it on one line.
      if (
        isSeq(parent) &&
        node.items.every((pair) => flat(pair.value) || (isSeq(pair.value) && pair.value.items.every(flat)))
      )
        node.flow = true;
    },
    Seq(_key, node) {
      if (node.items.every(flat)) node.flow = true;
    },
  });
  doc.commentBefore = [
    ' Kura configuration (kura.yaml): the sites Kura protects — hosts, VMs, storage arrays, tape',
    ' libraries, FC switches, backup servers, copy devices, the cables between them — and the',
    ' protection policies. Generated by `kura lab init`; edit freely and check it with',
    ' `kura config check`. Sizes take units (8MiB, 4GiB); paths are relative to this file.',
  ].join('\n');
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

/** `8MiB` when the size is a whole number of MiB/GiB, else the plain byte count. */
function sizeText(bytes: number): string | number {
  if (bytes % (1024 * MiB) === 0) return `${bytes / (1024 * MiB)}GiB`;
  if (bytes % MiB === 0) return `${bytes / MiB}MiB`;
  return bytes;
}

function positiveInt(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidInputError(`preset option ${what} must be a whole number of at least 1, not ${n}`);
  return n;
}

function nonNegativeInt(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new InvalidInputError(`preset option ${what} must be a whole number of at least 0, not ${n}`);
  return n;
}
