/**
 * The Temporal header that carries an installation with every workflow start, child workflow,
 * continue-as-new and activity. Pure (no Node built-ins, no Temporal client), so the workflow
 * interceptors use it as well as the client's and the activity worker's.
 */
import { defaultPayloadConverter, type Headers } from '@temporalio/common';

/** The header's name. Headers are not run through the payload codec, so every side reads it as written. */
export const INSTALLATION_HEADER = 'kura-installation';

/** The headers given, with the installation set (a header already there is replaced). */
export function withInstallationHeader(headers: Headers, installation: string): Headers {
  return { ...headers, [INSTALLATION_HEADER]: defaultPayloadConverter.toPayload(installation) };
}

/**
 * The installation the headers carry; undefined when there is none (work started before installations
 * existed, or by a client without Kura's interceptors), and `(unreadable)` when the header is not a string.
 */
export function installationOfHeaders(headers: Headers | undefined): string | undefined {
  const payload = headers?.[INSTALLATION_HEADER];
  if (payload === undefined) return undefined;
  try {
    const value: unknown = defaultPayloadConverter.fromPayload(payload);
    return typeof value === 'string' ? value : '(unreadable)';
  } catch {
    return '(unreadable)';
  }
}
