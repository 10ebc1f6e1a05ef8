import { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  S3Client,
  S3ServiceException,
  type S3ClientConfig
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import type { ArchiveStorage } from './storage.ts'

export interface S3StorageOptions {
  bucket: string
  /** an S3-compatible server (MinIO, Ceph, R2...); AWS's own endpoint when absent */
  endpoint?: string
  region: string
  /** `https://host/bucket/key` instead of `https://bucket.host/key` (most S3-compatible servers want it) */
  forcePathStyle: boolean
  /** every key lives under it (`archive` and `archive/` are the same prefix) */
  prefix?: string
  /** the SDK's default chain (env, shared files, container/instance roles) when absent */
  credentials?: S3ClientConfig['credentials']
  /** the wall clock (ms) that decides which incomplete uploads are stale */
  now?: () => number
  /** false: another thread's opening (no clean-up of incomplete uploads: the opener's did it) */
  clean?: boolean
}

export interface S3ArchiveStorage extends ArchiveStorage {
  /**
   * Aborts the incomplete multipart uploads under the prefix started more than
   * `olderThanMs` ago, and resolves how many it aborted. Their parts are
   * invisible but billed until aborted; a crash mid-put leaves them behind.
   */
  abortStaleUploads (olderThanMs: number): Promise<number>
}

/** An upload older than this is one a crashed process left, not one in flight. */
export const staleUploadAgeMs = 60 * 60 * 1000
/** S3's smallest part. A put holds at most partSize * (queueSize + 1) bytes in memory. */
const partSize = 5 * 1024 * 1024
const queueSize = 2
/** DeleteObjects takes at most this many keys per call. */
const deleteBatchSize = 1000

/**
 * Objects in an S3 bucket. A put streams through a multipart upload (a single
 * PutObject when the body fits one part): S3 makes the object visible only when
 * the upload completes, and a body that fails or a signal that aborts aborts
 * the multipart upload, so nothing is left under the key. Opening the storage
 * checks the bucket (a wrong name fails here, with its name) and aborts the
 * uploads a crash left behind.
 *
 * Permissions it needs: s3:PutObject, s3:GetObject, s3:DeleteObject,
 * s3:AbortMultipartUpload, s3:ListBucketMultipartUploads.
 */
export async function createS3Storage (options: S3StorageOptions): Promise<S3ArchiveStorage> {
  const { bucket } = options
  const now = options.now ?? Date.now
  const trimmedPrefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '')
  const prefix = trimmedPrefix === '' ? '' : `${trimmedPrefix}/`
  const client = new S3Client({
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
    // A server that accepts the connection and then says nothing must fail the
    // operation, not hang it. Idle, not total: a long video read stays open.
    requestHandler: { connectionTimeout: 5_000, socketTimeout: 120_000 },
    // Since client-s3 3.729 the SDK adds CRC checksums to every upload by default,
    // which several S3-compatible servers reject (XAmzContentSHA256Mismatch,
    // "Unsupported header x-amz-sdk-checksum-algorithm"). AWS itself keeps the default.
    ...(options.endpoint !== undefined ? { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' } : {})
  })

  function objectKey (key: string): string {
    // Keys are made by the archive, but one with empty, `.` or `..` segments could
    // be normalised out of the prefix by a proxy or server on the way: refuse it.
    if (key === '' || key.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')) {
      throw new Error(`archive key outside the prefix: ${key}`)
    }
    return prefix + key
  }

  /** An S3 error, said with the bucket and the operation; anything else (the body's own failure) as it is. */
  function failure (operation: string, key: string | null, error: unknown): unknown {
    if (!(error instanceof S3ServiceException)) return error
    const target = key === null ? `bucket "${bucket}"` : `"${key}" in bucket "${bucket}"`
    const status = error.$metadata.httpStatusCode === undefined ? '' : ` (HTTP ${error.$metadata.httpStatusCode})`
    return new Error(`S3 ${operation} failed for ${target}: ${error.name}${status}: ${error.message}`, { cause: error })
  }

  /** No such object; a missing bucket is a misconfiguration and stays an error. */
  function isMissing (error: unknown): boolean {
    return error instanceof S3ServiceException && error.name !== 'NoSuchBucket' &&
      (error.name === 'NoSuchKey' || error.name === 'NotFound' || error.$metadata.httpStatusCode === 404)
  }

  async function abortStaleUploads (olderThanMs: number): Promise<number> {
    const cutoff = now() - olderThanMs
    let aborted = 0
    let keyMarker: string | undefined
    let uploadIdMarker: string | undefined
    try {
      do {
        const page = await client.send(new ListMultipartUploadsCommand({
          Bucket: bucket,
          ...(prefix !== '' ? { Prefix: prefix } : {}),
          ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
          ...(uploadIdMarker !== undefined ? { UploadIdMarker: uploadIdMarker } : {})
        }))
        for (const upload of page.Uploads ?? []) {
          if (upload.Key === undefined || upload.UploadId === undefined || upload.Initiated === undefined) continue
          if (upload.Initiated.getTime() > cutoff) continue
          try {
            await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }))
            aborted++
          } catch (error) {
            // Completed or aborted meanwhile (by another instance): gone either way.
            if (!(error instanceof S3ServiceException && error.name === 'NoSuchUpload')) throw error
          }
        }
        keyMarker = page.IsTruncated === true ? page.NextKeyMarker : undefined
        uploadIdMarker = page.IsTruncated === true ? page.NextUploadIdMarker : undefined
      } while (keyMarker !== undefined)
    } catch (error) {
      throw failure('clean-up of incomplete uploads', null, error)
    }
    return aborted
  }

  if (options.clean !== false) {
    try {
      await abortStaleUploads(staleUploadAgeMs)
    } catch (error) {
      client.destroy()
      throw error
    }
  }

  return {
    kind: 's3',
    // Credentials given as objects (providers are functions) cannot cross to a thread; the SDK's chain can.
    ...(options.credentials === undefined
      ? { descriptor: { kind: 's3', bucket, region: options.region, forcePathStyle: options.forcePathStyle, ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}), ...(options.prefix !== undefined ? { prefix: options.prefix } : {}) } as const }
      : {}),
    async put (key, body, { contentType, signal }) {
      const target = objectKey(key)
      signal?.throwIfAborted()
      // The abort reaches the upload through its body: the failed read makes
      // lib-storage abort the multipart upload before done() rejects. (Its own
      // abortController rejects done() first and aborts the upload afterwards.)
      const onAbort = (): void => {
        body.destroy(Object.assign(new Error('archive upload aborted', { cause: signal?.reason }), { name: 'AbortError' }))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      const upload = new Upload({
        client,
        params: { Bucket: bucket, Key: target, Body: body, ContentType: contentType },
        partSize,
        queueSize,
        leavePartsOnError: false
      })
      try {
        await upload.done()
      } catch (error) {
        throw failure('put', key, error)
      } finally {
        signal?.removeEventListener('abort', onAbort)
        // A failed request stops the upload reading the body: release its source.
        if (!body.readableEnded) body.destroy()
      }
    },
    async read (key, range) {
      const target = objectKey(key)
      try {
        const object = await client.send(new GetObjectCommand({
          Bucket: bucket,
          Key: target,
          ...(range !== undefined ? { Range: `bytes=${range.start}-${range.end}` } : {})
        }))
        if (!(object.Body instanceof Readable)) throw new Error(`S3 read of "${key}" in bucket "${bucket}" gave no stream`)
        // With a range, ContentLength is the range's; the whole size follows the slash of ContentRange.
        const whole = object.ContentRange?.match(/\/(\d+)$/)?.[1]
        const size = whole !== undefined ? Number(whole) : object.ContentLength
        if (size === undefined) {
          object.Body.destroy()
          throw new Error(`S3 read of "${key}" in bucket "${bucket}" gave no size`)
        }
        return { body: object.Body, size }
      } catch (error) {
        if (isMissing(error)) return null
        if (range !== undefined && error instanceof S3ServiceException && error.name === 'InvalidRange') {
          // A range that starts past the end: like a file read there, nothing, with the object's size.
          try {
            const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: target }))
            return { body: Readable.from([]), size: head.ContentLength ?? 0 }
          } catch (headError) {
            if (isMissing(headError)) return null
            throw failure('read', key, headError)
          }
        }
        throw failure('read', key, error)
      }
    },
    async remove (keys) {
      const targets = [...new Set(keys.map(objectKey))]
      for (let start = 0; start < targets.length; start += deleteBatchSize) {
        const batch = targets.slice(start, start + deleteBatchSize)
        let result
        try {
          // Deleting a key that does not exist succeeds in S3: no special case.
          result = await client.send(new DeleteObjectsCommand({
            Bucket: bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true }
          }))
        } catch (error) {
          throw failure('remove', null, error)
        }
        const first = result.Errors?.[0]
        if (first !== undefined) {
          throw new Error(`S3 remove in bucket "${bucket}" failed for ${result.Errors?.length} key(s), first "${first.Key}": ${first.Code}: ${first.Message}`)
        }
      }
    },
    async close () {
      client.destroy()
    },
    abortStaleUploads
  }
}
