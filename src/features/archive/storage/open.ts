import type { ArchiveStorage, StorageDescriptor } from './storage.ts'
import { createDirectoryStorage } from './directory.ts'

/**
 * The storage a descriptor names. `clean`: the opener at start removes what a
 * crash left (temp files, stale multipart uploads); a download thread opens
 * the same storage without, since puts of the main thread may be under way.
 */
export async function openStorage (descriptor: StorageDescriptor, options: { clean: boolean }): Promise<ArchiveStorage> {
  if (descriptor.kind === 'directory') return await createDirectoryStorage({ root: descriptor.root, clean: options.clean })
  // Loaded only for a bucket: the AWS SDK weighs ~34 MB of memory (RSS) that every other gateway (and thread) would carry.
  const { createS3Storage } = await import('./s3.ts')
  const { kind: _kind, ...s3 } = descriptor
  return await createS3Storage({ ...s3, clean: options.clean })
}
