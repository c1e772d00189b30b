/** The check every hypervisor driver makes before it creates a VM from an image: both images are there and of the definition's sizes. */
import { existsSync } from 'node:fs';
import { InvalidInputError, NotFoundError } from '../domain/errors';
import { definitionVolume, type VmDefinition } from '../domain/vm-image';
import type { RebuildImages } from './types';

/**
 * Throws NotFoundError for an image with no file, and InvalidInputError for one whose size is not
 * what the definition gives its role: such an image is not of this VM.
 */
export function requireImagesOf(def: VmDefinition, images: RebuildImages): void {
  for (const [role, img] of [
    ['software', images.software],
    ['data', images.data],
  ] as const) {
    if (!existsSync(img.file))
      throw new NotFoundError(`image ${img.imageId} has no file at ${img.file}`, { imageId: img.imageId });
    if (img.sizeBytes !== definitionVolume(def, role).sizeBytes)
      throw new InvalidInputError(
        `the ${role} image ${img.imageId} is ${img.sizeBytes} bytes but ${def.name}'s definition says ${definitionVolume(def, role).sizeBytes}; the image is not of this VM`,
      );
  }
}
