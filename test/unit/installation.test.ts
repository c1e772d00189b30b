/**
 * Installations: kura.yaml's id, and how it goes into task queue names, workflow and schedule ids,
 * the Nexus endpoint and the header every workflow and activity carries.
 */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load';
import { ConfigInvalidError, ErrorType, InvalidInputError, NON_RETRYABLE_ERROR_TYPES } from '../../src/domain/errors';
import { DEFAULT_INSTALLATION, wrongInstallationMessage } from '../../src/domain/installation';
import { hospitalPreset, renderConfigYaml } from '../../src/lab/preset';
import {
  CONTROL_TASK_QUEUE,
  installationOfTaskQueue,
  installationTaskQueue,
  serverTaskQueue,
} from '../../src/api/task-queues';
import { controlTaskQueue } from '../../src/api/environment';
import {
  backupWorkflowId,
  guardianWorkflowId,
  parseScheduleId,
  poolWorkflowId,
  scheduleIdFor,
  scheduledFleetWorkflowId,
} from '../../src/api/workflow-ids';
import { KURA_NEXUS_ENDPOINT, kuraNexusEndpoint } from '../../src/api/nexus-service';
import { INSTALLATION_HEADER, installationOfHeaders, withInstallationHeader } from '../../src/api/installation-header';

const at = '2026-11-22T02:00:00.000Z';

function configText(installation?: string): string {
  const cfg = hospitalPreset({ vms: 2 });
  return renderConfigYaml(installation === undefined ? cfg : { ...cfg, installation });
}

describe("kura.yaml's installation", () => {
  it('is the default installation when the file names none, so configurations of before keep working', () => {
    expect(parseConfigText(configText(), '/k/kura.yaml').config.installation).toBe('default');
    expect(DEFAULT_INSTALLATION).toBe('default');
  });

  it('is read as written when it is a short id of lowercase letters, digits and dashes', () => {
    for (const id of ['3f9c2a71', 'ward-b', 'a']) {
      expect(parseConfigText(configText(id), '/k/kura.yaml').config.installation).toBe(id);
    }
  });

  it('refuses an id that cannot go into a task queue name or a workflow id, saying what an id is', () => {
    for (const id of ['Ward', 'a/b', 'a@b', '-a', 'a-', '', 'x'.repeat(33)]) {
      let caught: unknown;
      try {
        parseConfigText(configText(id), '/k/kura.yaml');
      } catch (err) {
        caught = err;
      }
      expect(caught, id).toBeInstanceOf(ConfigInvalidError);
      const err = caught as ConfigInvalidError;
      expect(err.issues.map((i) => i.path.replace(/ \(line \d+\)$/, ''))).toEqual(['installation']);
      expect(err.issues[0]?.message).toMatch(/1 to 32 lowercase letters, digits and dashes/);
    }
  });
});

describe('task queues of an installation', () => {
  it("carry the installation after an @, and the default installation's keep their names", () => {
    expect(installationTaskQueue(CONTROL_TASK_QUEUE, '3f9c2a71')).toBe('kura-control@3f9c2a71');
    expect(installationTaskQueue(CONTROL_TASK_QUEUE, DEFAULT_INSTALLATION)).toBe('kura-control');
    expect(installationTaskQueue('kura-control@3f9c2a71', '3f9c2a71')).toBe('kura-control@3f9c2a71');
  });

  it('give back their installation, which is how workflow code knows its own', () => {
    expect(installationOfTaskQueue('kura-control@3f9c2a71')).toBe('3f9c2a71');
    expect(installationOfTaskQueue('t-1234-kura-control@ward-b')).toBe('ward-b');
    expect(installationOfTaskQueue('kura-control')).toBe(DEFAULT_INSTALLATION);
    expect(installationOfTaskQueue('t-1234-kura-control')).toBe(DEFAULT_INSTALLATION);
  });

  it("put each backup server's queue beside the control queue, in the same installation", () => {
    expect(serverTaskQueue('bks-01', 'kura-control@3f9c2a71')).toBe('kura-server-bks-01@3f9c2a71');
    expect(serverTaskQueue('bks-01', 't-1234-kura-control@ward-b')).toBe('t-1234-kura-server-bks-01@ward-b');
    expect(serverTaskQueue('bks-01', 'custom@ward-b')).toBe('custom-server-bks-01@ward-b');
    expect(installationOfTaskQueue(serverTaskQueue('bks-01', 'kura-control@ward-b'))).toBe('ward-b');
  });

  it("add kura.yaml's installation to the control queue given, or to $KURA_TASK_QUEUE's", () => {
    expect(controlTaskQueue('t-1-kura-control', 'ward-b')).toBe('t-1-kura-control@ward-b');
    expect(controlTaskQueue('t-1-kura-control@ward-b', 'ward-b')).toBe('t-1-kura-control@ward-b');
    expect(controlTaskQueue('t-1-kura-control')).toBe('t-1-kura-control');
  });

  it('refuse a queue of another installation, naming both, before a job could start on it', () => {
    let caught: unknown;
    try {
      controlTaskQueue('kura-control@ward-a', 'ward-b');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidInputError);
    expect((caught as InvalidInputError).message).toBe(
      "task queue kura-control@ward-a belongs to installation ward-a, but kura.yaml's installation is ward-b; " +
        'set KURA_TASK_QUEUE (or the queue given) without an installation, or to one of ward-b',
    );
  });
});

describe('workflow and schedule ids of an installation', () => {
  it('start with the installation, so two estates with the same sites and VMs never meet on an id', () => {
    expect(backupWorkflowId('vm-001', at, '3f9c2a71')).toBe('3f9c2a71/op/backup/vm-001/20261122T020000Z');
    expect(poolWorkflowId('hospital', '3f9c2a71')).toBe('3f9c2a71/pool/hospital');
    expect(guardianWorkflowId('vm-001', 'ward-b')).toBe('ward-b/vm/vm-001');
    expect(scheduledFleetWorkflowId('all', 'ward-b')).toBe('ward-b/fleet/all');
    expect(poolWorkflowId('hospital', 'ward-a')).not.toBe(poolWorkflowId('hospital', 'ward-b'));
  });

  it('are those of before for the default installation, so what runs keeps its ids', () => {
    expect(backupWorkflowId('vm-001', at, DEFAULT_INSTALLATION)).toBe('op/backup/vm-001/20261122T020000Z');
    expect(poolWorkflowId('hospital', DEFAULT_INSTALLATION)).toBe('pool/hospital');
  });

  it('name a schedule by installation, site and policy, and parse back all three', () => {
    expect(scheduleIdFor('hospital', 'nightly', 'ward-b')).toBe('kura/ward-b/hospital/nightly');
    expect(parseScheduleId('kura/ward-b/hospital/nightly')).toEqual({
      installation: 'ward-b',
      site: 'hospital',
      policy: 'nightly',
    });
    expect(parseScheduleId(scheduleIdFor('hospital', 'nightly'))).toEqual({
      installation: DEFAULT_INSTALLATION,
      site: 'hospital',
      policy: 'nightly',
    });
    for (const id of ['kura/a/b/c/d', 'kura//b/c', 'kura/a//c']) expect(parseScheduleId(id)).toBeUndefined();
  });

  it('give each installation a Nexus endpoint of its own, and the default one the endpoint of before', () => {
    expect(kuraNexusEndpoint(DEFAULT_INSTALLATION)).toBe(KURA_NEXUS_ENDPOINT);
    expect(kuraNexusEndpoint('3f9c2a71')).toBe('kura-3f9c2a71');
  });
});

describe('the installation header', () => {
  it('reads back the installation written, and nothing when there is no header', () => {
    const headers = withInstallationHeader({}, 'ward-b');
    expect(Object.keys(headers)).toEqual([INSTALLATION_HEADER]);
    expect(installationOfHeaders(headers)).toBe('ward-b');
    expect(installationOfHeaders(withInstallationHeader(headers, 'ward-c'))).toBe('ward-c');
    expect(installationOfHeaders({})).toBeUndefined();
    expect(installationOfHeaders(undefined)).toBeUndefined();
  });

  it('is refused with a non-retryable type and a message that names both installations and what to do', () => {
    expect(NON_RETRYABLE_ERROR_TYPES).toContain(ErrorType.WrongInstallation);
    expect(wrongInstallationMessage('activity restartVm of workflow w', 'ward-a', 'ward-b')).toBe(
      'activity restartVm of workflow w belongs to installation ward-a, but this worker serves installation ward-b; ' +
        'nothing was done. Start the work with the client of installation ward-a (its kura.yaml), on its own task ' +
        'queue, or run a worker of installation ward-a',
    );
  });
});
