/**
 * The one data converter of Kura: every Client, Worker and workflow bundle of the project (the
 * stack, the CLI, the API, the tests, the benchmarks, the typed client's callers) builds its data
 * converter here, so every payload is encrypted with the installation's keys and every failure's
 * message and stack trace travel encoded.
 */
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { DataConverter, LoadedDataConverter, Payload, PayloadCodec } from '@temporalio/common';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { LoadedConfig } from '../config/load';
import { AesGcmCodec } from './aes-gcm-codec';
import { keyFileOf, readKeyRing, type KeyRing } from './keys';

/**
 * The failure converter's module, by path: the workflow bundle compiles it in. The compiled `.js`
 * in the package, the `.ts` source under tsx and the test runner (which resolves no bare name).
 */
export const FAILURE_CONVERTER_PATH =
  ['failure-converter.js', 'failure-converter.ts'].map((f) => path.join(__dirname, f)).find((f) => existsSync(f)) ??
  path.join(__dirname, 'failure-converter.js');

/** What `bundleWorkflowCode` needs beside `workflowsPath` so workflows encode failures as workers do. */
export const WORKFLOW_BUNDLE_CONVERTERS = { failureConverterPath: FAILURE_CONVERTER_PATH } as const;

/** Where the keys come from: kura.yaml (its `security.keyFile`), or a key file named directly. */
export type KeySource = LoadedConfig | { keyFile?: string | undefined } | undefined;

function keyFileFrom(source: KeySource): string | undefined {
  if (!source) return undefined;
  if ('config' in source) return keyFileOf(source);
  return source.keyFile === undefined ? undefined : path.resolve(source.keyFile);
}

const rings = new Map<string, { stamp: string; ring: KeyRing }>();

/**
 * The key ring of a file, read again whenever the file changes: after `kura keys rotate` a running
 * worker encrypts with the new key and decrypts what a client encrypted with it, without a restart.
 * Checked (existence, mode, content) at every read, so a broken file fails loudly, never silently.
 */
export function keyRingOf(file: string): KeyRing {
  const st = statSync(file, { throwIfNoEntry: false });
  const stamp = st ? `${st.mtimeMs}:${st.size}:${st.ino}:${st.mode}` : 'missing';
  const cached = rings.get(file);
  if (cached && cached.stamp === stamp) return cached.ring;
  const ring = readKeyRing(file);
  rings.set(file, { stamp, ring });
  return ring;
}

/** The payload codecs for a key source: the AES-256-GCM codec, or none when no key file is set. */
export function kuraPayloadCodecs(source: KeySource): PayloadCodec[] {
  const file = keyFileFrom(source);
  if (file === undefined) return [];
  keyRingOf(file); // a missing or open key file stops the start here, not at the first payload
  return [new AesGcmCodec(() => keyRingOf(file))];
}

/**
 * The data converter for a Client or a Worker: `new Client({ connection, dataConverter: kuraDataConverter(loadConfig()) })`,
 * or `kuraDataConverter({ keyFile })` for a caller that has the key file but not kura.yaml.
 */
export function kuraDataConverter(source?: KeySource): DataConverter {
  return { failureConverterPath: FAILURE_CONVERTER_PATH, payloadCodecs: kuraPayloadCodecs(source) };
}

/**
 * Decodes a payload read from a raw response (a description's pending activities, a history) as the
 * client that read it decodes its own answers: through its codecs, then its payload converter.
 */
export async function decodePayload<T>(
  client: { options: { loadedDataConverter: LoadedDataConverter } },
  payload: Payload,
): Promise<T> {
  return decodeFromPayloadsAtIndex<T>(client.options.loadedDataConverter, 0, [payload]);
}
