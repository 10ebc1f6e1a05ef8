import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { gatewayError } from '../../errors/table.ts'
import { Counter, Gauge } from 'prom-client'
import { LRUCache } from 'lru-cache'
import type { DestinationPolicy, LookupFunction } from '../../http/destination.ts'
import { createQueueWorker } from '../store/queue-worker.ts'
import type { TaskSighting } from '../tasks/status.ts'
import type { Tenant } from '../tenants/registry.ts'
import { createSourceDownloader, DownloadFailure, type SourceDownloader } from './download.ts'
import { createDownloadThreads, policyToString, type ArchiveDownloads } from './download-threads.ts'
import { createContentLinkSigner, type ContentLink } from './links.ts'
import { createMemoryArchiveRecords, createRedisArchiveRecords, type ArchiveRecord, type ArchiveRecords } from './records.ts'
import type { ArchiveStorage, ByteRange, StoredBody } from './storage/storage.ts'

/** A tenant's archive settings, its own over the gateway's defaults. */
export interface ArchiveSettings {
  enabled: boolean
  /** 0: kept until erased */
  retentionDays: number
  rewriteResults: boolean
}

export interface ArchiveOptions {
  /** null: no archive configured (no ARCHIVE_DIR, no ARCHIVE_S3_BUCKET) */
  storage: ArchiveStorage | null
  defaults: ArchiveSettings
  /** GATEWAY_SECRET(s): the first signs content links, all verify */
  secrets: readonly string[]
  linkTtlMs: number
  /** who result URLs may point to (ARCHIVE_ALLOWED_SOURCES over the SSRF rules) */
  sourcePolicy: DestinationPolicy
  maxBytes: number
  downloadIdleTimeoutMs: number
  leaseMs: number
  retryBaseDelayMs: number
  concurrency: number
  /**
   * ARCHIVE_DOWNLOAD_THREADS: worker threads that download, hash and store
   * (at most `concurrency`); 0: on the main thread. The main thread too when
   * the storage has no descriptor or a `lookup` is given (neither crosses to a thread).
   */
  downloadThreads?: number
  pollIntervalMs: number
  /** on close, how long a download under way may take before its job is handed back to the queue (default 0: at once) */
  stopGraceMs?: number
  now?: () => number
  lookup?: LookupFunction
}

export interface Archive {
  /** whether storage is configured at all */
  readonly configured: boolean
  settingsOf (tenant: Tenant): ArchiveSettings
  /** the archive record of a task of this tenant (null: none, or another tenant's) */
  recordOf (tenantId: string, upstreamTaskId: string): Promise<ArchiveRecord | null>
  /** an archived video's bytes (or a range of them); null when gone */
  open (record: ArchiveRecord, index: number, range?: ByteRange): Promise<StoredBody | null>
  /** deletes a task's archived videos now and for good (it is never archived again); idempotent */
  erase (tenantId: string, upstreamTaskId: string): Promise<void>
  /** a signed link's query string, valid for ARCHIVE_LINK_TTL_MS (expiry rounded up to the hour, so reads within one hour agree) */
  signLink (link: Omit<ContentLink, 'expires'>): { query: string, expires: number }
  verifyLink (link: ContentLink, signature: string): boolean
  /** the upstream link downloader (its SSRF rules): content is streamed from it before the archive is done */
  readonly sources: SourceDownloader
}

declare module 'fastify' {
  interface FastifyInstance {
    archive: Archive
    /** onRequest of routes that take signed content links: sets `request.tenant` from a valid link, or refuses */
    authenticateContentLink (request: FastifyRequest): Promise<void>
  }
}

const msPerDay = 86_400_000
/** Result links live 24 h (Evolink: "valid for 24 hours, please save promptly"). */
const sourceLifetimeMs = msPerDay
/** A finished record is kept this long past its objects, so that re-reads of the task do not archive it again. */
const tombstoneTtlMs = 8 * msPerDay
const maxRetryDelayMs = 15 * 60_000

const objectKey = (record: Pick<ArchiveRecord, 'tenantId' | 'upstreamTaskId'>, index: number): string =>
  `${record.tenantId}/${encodeURIComponent(record.upstreamTaskId)}/${index}.mp4`

function ttlOf (record: ArchiveRecord, now: number): number {
  if (record.status === 'pending') return Math.max(0, record.sourcesExpireAt - now) + tombstoneTtlMs
  if (record.status === 'archived' && record.retainUntil !== null) return Math.max(0, record.retainUntil - now) + tombstoneTtlMs
  if (record.status === 'archived') return 3650 * msPerDay
  return tombstoneTtlMs
}

/** When the upstream's links of this task die: 24 h after it was created, and never less than an hour from now. */
function sourcesExpireAt (sighting: TaskSighting, now: number): number {
  const created = Number(sighting.snapshot.task.created)
  const fromCreate = Number.isFinite(created) && created > 0 ? created * 1000 + sourceLifetimeMs : now + sourceLifetimeMs
  return Math.max(fromCreate, now + 3_600_000)
}

/**
 * The archive: every completed task of a tenant that wants it is queued once
 * (taskStatus.onFinished), its result files are downloaded into storage by a
 * worker per instance over a shared queue (records.ts), retried with backoff
 * until the upstream links die, and deleted at the end of their retention.
 */
async function archivePlugin (fastify: FastifyInstance, options: ArchiveOptions): Promise<void> {
  const now = options.now ?? Date.now
  const { storage } = options
  const log = fastify.log.child({ component: 'archive' })
  const records: ArchiveRecords = fastify.redis === null
    ? createMemoryArchiveRecords({ now })
    : createRedisArchiveRecords({ redis: fastify.redis, keyPrefix: fastify.redisKeys.archive })
  const signer = createContentLinkSigner({ secrets: options.secrets })
  const downloadSettings = {
    maxBytes: options.maxBytes,
    idleTimeoutMs: options.downloadIdleTimeoutMs,
    // A download must end within its lease, or another instance would start it over.
    totalTimeoutMs: Math.max(1000, options.leaseMs - 1000)
  }
  const sources = createSourceDownloader({ policy: options.sourcePolicy, ...downloadSettings, lookup: options.lookup })
  const threads = Math.min(options.downloadThreads ?? 0, options.concurrency)
  const descriptor = storage?.descriptor
  const downloads: ArchiveDownloads | null = storage === null
    ? null
    : threads > 0 && descriptor !== undefined && options.lookup === undefined
      ? createDownloadThreads({ size: threads, init: { policy: policyToString(options.sourcePolicy), ...downloadSettings, storage: descriptor } })
      : { download: async ({ url, key, signal }) => await sources.download({ url, key, storage, signal }), close: async () => {} }

  const registry = fastify.metrics.registry
  const jobsTotal = new Counter({ name: 'vg_archive_jobs_total', help: 'Archive jobs ended, by outcome (archived, failed), and attempts that failed and will be retried (retry).', labelNames: ['outcome'] as const, registers: [registry] })
  const bytesTotal = new Counter({ name: 'vg_archive_bytes_total', help: 'Bytes of video archived.', registers: [registry] })
  const deletedTotal = new Counter({ name: 'vg_archive_deletions_total', help: 'Tasks whose archived videos were deleted, by reason (retention, erasure).', labelNames: ['reason'] as const, registers: [registry] })
  new Gauge({ // eslint-disable-line no-new
    name: 'vg_archive_queue_depth',
    help: 'Archive jobs queued (waiting, retrying or running), across instances with Redis.',
    registers: [registry],
    async collect () { this.set(await records.jobs.size().catch(() => 0)) }
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'vg_archive_oldest_job_age_seconds',
    help: 'How long the earliest due archive job has been waiting (0: none due).',
    registers: [registry],
    async collect () {
      const due = await records.jobs.nextDueAt().catch(() => null)
      this.set(due === null ? 0 : Math.max(0, (now() - due) / 1000))
    }
  })

  function settingsOf (tenant: Tenant): ArchiveSettings {
    return {
      enabled: storage !== null && (tenant.archive.enabled ?? options.defaults.enabled),
      retentionDays: tenant.archive.retentionDays ?? options.defaults.retentionDays,
      rewriteResults: tenant.archive.rewriteResults ?? options.defaults.rewriteResults
    }
  }

  // Every read of a finished task reports it: the ones already queued here are not asked about again.
  const queuedHere = new LRUCache<string, true>({ max: 10_000 })

  async function enqueue (sighting: TaskSighting): Promise<void> {
    const { tenantId, upstreamTaskId, snapshot } = sighting
    if (storage === null || snapshot.task.status !== 'completed' || queuedHere.has(upstreamTaskId)) return
    const tenant = fastify.tenantRegistry.current.byId.get(tenantId)
    if (tenant === undefined || !settingsOf(tenant).enabled) return
    const results = Array.isArray(snapshot.task.results) ? snapshot.task.results.filter((url): url is string => typeof url === 'string') : []
    if (results.length === 0) return
    const at = now()
    const record: ArchiveRecord = {
      tenantId,
      upstreamTaskId,
      status: 'pending',
      sources: results,
      objects: [],
      attempts: 0,
      lastError: null,
      createdAt: at,
      updatedAt: at,
      sourcesExpireAt: sourcesExpireAt(sighting, at),
      archivedAt: null,
      retainUntil: null
    }
    const { created } = await records.create(record, ttlOf(record, at))
    queuedHere.set(upstreamTaskId, true)
    if (!created) return
    await records.jobs.schedule(upstreamTaskId, at)
    log.info({ tenant: tenantId, upstreamTaskId, videos: results.length }, 'archive job queued')
    worker.wake()
  }

  function retryDelay (attempts: number): number {
    const ceiling = Math.min(maxRetryDelayMs, options.retryBaseDelayMs * 2 ** Math.min(attempts - 1, 20))
    return Math.max(options.retryBaseDelayMs / 2, Math.random() * ceiling)
  }

  /** The record changed under the worker (erased while downloading): what it stored must go too. */
  async function stillPending (upstreamTaskId: string): Promise<boolean> {
    return (await records.get(upstreamTaskId))?.status === 'pending'
  }

  async function runJob (upstreamTaskId: string, signal: AbortSignal): Promise<void> {
    const record = await records.get(upstreamTaskId)
    if (record === null || record.status !== 'pending' || storage === null) {
      await records.jobs.remove(upstreamTaskId)
      return
    }
    const fields = { tenant: record.tenantId, upstreamTaskId }
    for (const [index, url] of record.sources.entries()) {
      if (record.objects.some((object) => object.index === index)) continue
      const key = objectKey(record, index)
      try {
        // (downloads is set whenever storage is)
        const stored = await downloads!.download({ url, key, signal })
        record.objects.push({ index, key, ...stored })
      } catch (error) {
        // Shutting down: the queue worker hands the lease back and another instance carries on at once (what was stored is kept).
        if (signal.aborted) return
        const failure = error instanceof DownloadFailure ? error : new DownloadFailure('internal error', { permanent: false, cause: error })
        if (!failure.permanent && !(failure.cause === undefined)) log.debug({ ...fields, err: failure.cause }, 'archive download error')
        await attemptFailed(record, index, failure)
        return
      }
      if (!await stillPending(upstreamTaskId)) {
        await storage.remove(record.objects.map((object) => object.key))
        await records.jobs.remove(upstreamTaskId)
        return
      }
      record.updatedAt = now()
      await records.save(record, ttlOf(record, now()))
    }
    const at = now()
    const tenant = fastify.tenantRegistry.current.byId.get(record.tenantId)
    const retentionDays = tenant === undefined ? options.defaults.retentionDays : settingsOf(tenant).retentionDays
    const archived: ArchiveRecord = { ...record, status: 'archived', archivedAt: at, updatedAt: at, lastError: null, retainUntil: retentionDays === 0 ? null : at + retentionDays * msPerDay }
    await records.save(archived, ttlOf(archived, at))
    await records.jobs.remove(upstreamTaskId)
    if (archived.retainUntil !== null) await records.retention.schedule(upstreamTaskId, archived.retainUntil)
    const bytes = archived.objects.reduce((sum, object) => sum + object.size, 0)
    jobsTotal.inc({ outcome: 'archived' })
    bytesTotal.inc(bytes)
    await fastify.tenantUsage.archived({ tenantId: record.tenantId, videos: archived.objects.length, bytes })
    log.info({ ...fields, videos: archived.objects.length, bytes, attempts: archived.attempts + 1, storage: storage.kind }, 'task archived')
  }

  async function attemptFailed (record: ArchiveRecord, index: number, failure: DownloadFailure): Promise<void> {
    const at = now()
    const attempts = record.attempts + 1
    const reason = `video ${index}: ${failure.message}`
    const nextAt = at + retryDelay(attempts)
    const fields = { tenant: record.tenantId, upstreamTaskId: record.upstreamTaskId, attempt: attempts, reason }
    if (failure.permanent || nextAt >= record.sourcesExpireAt) {
      const failed: ArchiveRecord = { ...record, status: 'failed', attempts, lastError: failure.permanent ? reason : `${reason} (gave up: the upstream links expired)`, updatedAt: at }
      await records.save(failed, ttlOf(failed, at))
      await records.jobs.remove(record.upstreamTaskId)
      // What was stored of a task that cannot be archived whole is not kept.
      if (storage !== null && record.objects.length > 0) await storage.remove(record.objects.map((object) => object.key))
      jobsTotal.inc({ outcome: 'failed' })
      log.warn(fields, 'archive failed for good')
      return
    }
    const retrying: ArchiveRecord = { ...record, attempts, lastError: reason, updatedAt: at }
    await records.save(retrying, ttlOf(retrying, at))
    await records.jobs.schedule(record.upstreamTaskId, nextAt)
    jobsTotal.inc({ outcome: 'retry' })
    log.info({ ...fields, next_attempt_at: new Date(nextAt).toISOString() }, 'archive attempt failed, will retry')
  }

  async function sweep (upstreamTaskId: string): Promise<void> {
    const record = await records.get(upstreamTaskId)
    if (record !== null && record.status === 'archived' && storage !== null) {
      if (record.retainUntil !== null && record.retainUntil > now()) {
        await records.retention.schedule(upstreamTaskId, record.retainUntil)
        return
      }
      await storage.remove(record.objects.map((object) => object.key))
      const expired: ArchiveRecord = { ...record, status: 'expired', objects: [], updatedAt: now() }
      await records.save(expired, ttlOf(expired, now()))
      deletedTotal.inc({ reason: 'retention' })
      log.info({ tenant: record.tenantId, upstreamTaskId }, 'archived videos deleted at the end of their retention')
    }
    await records.retention.remove(upstreamTaskId)
  }

  const worker = createQueueWorker({
    name: 'archive',
    queue: records.jobs,
    now,
    leaseMs: options.leaseMs,
    handle: runJob,
    pollIntervalMs: options.pollIntervalMs,
    concurrency: options.concurrency,
    log,
    // SIGTERM's drain: this instance still queues jobs; the others download them.
    claimUntil: fastify.shutdownDrain.signal
  })
  const sweeper = createQueueWorker({
    name: 'archive retention',
    queue: records.retention,
    now,
    leaseMs: 60_000,
    handle: sweep,
    pollIntervalMs: options.pollIntervalMs,
    concurrency: 16,
    log,
    claimUntil: fastify.shutdownDrain.signal
  })

  fastify.decorate('archive', {
    configured: storage !== null,
    settingsOf,
    async recordOf (tenantId, upstreamTaskId) {
      const record = await records.get(upstreamTaskId)
      return record === null || record.tenantId !== tenantId ? null : record
    },
    async open (record, index, range) {
      const object = record.objects.find((candidate) => candidate.index === index)
      if (storage === null || object === undefined) return null
      return await storage.read(object.key, range)
    },
    async erase (tenantId, upstreamTaskId) {
      const at = now()
      const existing = await records.get(upstreamTaskId)
      if (existing !== null && existing.tenantId !== tenantId) return
      if (existing?.status === 'erased') return
      const keys = existing === null ? [] : existing.sources.map((_, index) => objectKey(existing, index))
      const erased: ArchiveRecord = existing === null
        ? { tenantId, upstreamTaskId, status: 'erased', sources: [], objects: [], attempts: 0, lastError: null, createdAt: at, updatedAt: at, sourcesExpireAt: at, archivedAt: null, retainUntil: null }
        : { ...existing, status: 'erased', objects: [], updatedAt: at }
      // The tombstone first: a worker mid-download sees it and removes what it stored.
      await records.save(erased, ttlOf(erased, at))
      queuedHere.set(upstreamTaskId, true)
      await records.jobs.remove(upstreamTaskId)
      await records.retention.remove(upstreamTaskId)
      if (storage !== null && keys.length > 0) await storage.remove(keys)
      deletedTotal.inc({ reason: 'erasure' })
      log.info({ tenant: tenantId, upstreamTaskId }, 'archived videos erased on request')
    },
    signLink (link) {
      const hourMs = 3_600_000
      const expires = Math.ceil((now() + options.linkTtlMs) / hourMs) * hourMs / 1000
      return { query: signer.sign({ ...link, expires }), expires }
    },
    verifyLink: signer.verify,
    sources
  } satisfies Archive)

  /**
   * A signed link: the signature over tenant, task, index and expiry, then the
   * expiry. The task id is still checked against the tenant by the route. The
   * signature is 128 bits: guessing it is hopeless, so no per-IP count here.
   */
  fastify.decorate('authenticateContentLink', async function authenticateContentLink (request: FastifyRequest) {
    const query = request.query as { index?: string, tenant?: string, expires?: string, signature?: string }
    const expires = Number(query.expires)
    const index = Number(query.index ?? '0')
    const tenant = query.tenant === undefined ? undefined : fastify.tenantRegistry.current.byId.get(query.tenant)
    const link = { tenantId: query.tenant ?? '', taskId: (request.params as { task_id?: string }).task_id ?? '', index, expires }
    if (tenant === undefined || !Number.isSafeInteger(expires) || !Number.isSafeInteger(index) || !signer.verify(link, query.signature ?? '')) {
      throw gatewayError('invalid_link', { param: 'signature' })
    }
    if (expires * 1000 <= now()) throw gatewayError('link_expired', { args: [new Date(expires * 1000).toISOString()], param: 'expires' })
    request.tenant = tenant
  })

  fastify.taskStatus.onFinished(enqueue)
  // Deleting a video (the OpenAI dialect's DELETE /v1/videos/{id}) erases its archive too.
  fastify.taskIndex.onRemoved(async ({ tenantId, upstreamTaskId }) => { await fastify.archive.erase(tenantId, upstreamTaskId) })
  fastify.addHook('onReady', async () => {
    if (storage === null) return
    worker.start()
    sweeper.start()
    // Jobs left by an instance that stopped (or this one, restarted) are due already: look now.
    worker.wake()
  })
  fastify.addHook('preClose', async () => {
    // Before Redis is closed (onClose): the jobs under way finish or are handed back.
    await Promise.all([worker.stop({ graceMs: options.stopGraceMs ?? 0 }), sweeper.stop({ graceMs: options.stopGraceMs ?? 0 })])
  })
  fastify.addHook('onClose', async () => {
    // After preClose's stop: the downloads were answered (or handed back); the threads end here.
    await downloads?.close()
    await sources.close()
    await storage?.close()
  })
}

export default fp(archivePlugin, { name: 'archive', fastify: '5.x', dependencies: ['redis-store', 'task-status', 'task-index', 'tenant-usage', 'metrics', 'tenant-auth', 'graceful-shutdown'] })
