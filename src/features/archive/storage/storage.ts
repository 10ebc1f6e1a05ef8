import type { Readable } from 'node:stream'

/** Bytes of one stored object: all of it, or an inclusive byte range. */
export interface ByteRange {
  start: number
  /** inclusive */
  end: number
}

export interface StoredBody {
  body: Readable
  /** the whole object's size (not the range's) */
  size: number
}

/**
 * How another thread opens the same storage (the download workers write
 * objects themselves): plain data, since nothing else crosses to a thread.
 */
export type StorageDescriptor =
  | { kind: 'directory', root: string }
  | { kind: 's3', bucket: string, endpoint?: string, region: string, forcePathStyle: boolean, prefix?: string }

/**
 * Where archived videos live: a local directory or an S3-compatible bucket.
 * Keys are `/`-separated relative paths made by the archive (`<tenant>/<task>/<index>.mp4`),
 * never caller input. Hashing, size limits and content checks happen before
 * the bytes reach a backend (download.ts), so a backend only moves bytes.
 */
export interface ArchiveStorage {
  /** `directory` or `s3`, for logs and metrics */
  readonly kind: string
  /** how a download worker opens this storage; absent: it cannot (credentials given as objects), downloads stay on the main thread */
  readonly descriptor?: StorageDescriptor
  /**
   * Streams `body` into `key`. The object becomes visible only when the whole
   * body is stored (temp name then rename; a completed multipart upload): if
   * `body` errors or `signal` aborts, nothing is left under `key` (an older
   * complete object under the same key stays as it was), and this rejects.
   */
  put (key: string, body: Readable, options: { contentType: string, signal?: AbortSignal }): Promise<void>
  /** the object (or the range of it), or null when there is none */
  read (key: string, range?: ByteRange): Promise<StoredBody | null>
  /** deletes the objects; a key that does not exist is not an error */
  remove (keys: readonly string[]): Promise<void>
  /** releases clients and handles */
  close (): Promise<void>
}
