import t from 'tap'
import { createHmac } from 'node:crypto'
import fc from 'fast-check'
import { createTaskIdCodec, sha256Hmac } from '../../../src/features/tasks/task-id.ts'

const secret = 'a-test-secret-that-is-at-least-32-characters'
const codec = createTaskIdCodec({ secrets: [secret] })
const tenantId = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/)
const upstreamId = fc.string({ minLength: 1, maxLength: 200 })

t.test('an id minted for a tenant verifies for it, and only for it', async (t) => {
  fc.assert(fc.property(tenantId, tenantId, upstreamId, (owner, other, id) => {
    const scoped = codec.scope(owner, id)
    if (codec.unscope(owner, scoped) !== id) return false
    return owner === other || codec.unscope(other, scoped) === null
  }), { numRuns: 2000 })
  t.pass('2000 cases')
})

t.test('any edit of a scoped id fails verification', async (t) => {
  fc.assert(fc.property(tenantId, upstreamId, fc.nat(), fc.string({ minLength: 1, maxLength: 1 }), (owner, id, position, replacement) => {
    const scoped = codec.scope(owner, id)
    const index = position % scoped.length
    if (scoped[index] === replacement) return true
    const edited = scoped.slice(0, index) + replacement + scoped.slice(index + 1)
    return codec.unscope(owner, edited) === null
  }), { numRuns: 2000 })
  t.pass('2000 cases')
})

t.test('arbitrary strings never verify', async (t) => {
  fc.assert(fc.property(tenantId, fc.string({ maxLength: 300 }), (owner, presented) => codec.unscope(owner, presented) === null), { numRuns: 2000 })
  t.pass('2000 cases')
})

t.test('rotation: the first secret signs, every listed one verifies', async (t) => {
  const old = createTaskIdCodec({ secrets: ['old-secret-old-secret-old-secret-0000'] })
  const rotated = createTaskIdCodec({ secrets: ['new-secret-new-secret-new-secret-1111', 'old-secret-old-secret-old-secret-0000'] })
  const fresh = createTaskIdCodec({ secrets: ['new-secret-new-secret-new-secret-1111'] })
  const legacyId = old.scope('acme', 'task-unified-1-abc')
  t.equal(rotated.unscope('acme', legacyId), 'task-unified-1-abc')
  t.equal(fresh.unscope('acme', legacyId), null)
  t.equal(fresh.unscope('acme', rotated.scope('acme', 'task-unified-1-abc')), 'task-unified-1-abc')
  t.throws(() => createTaskIdCodec({ secrets: [] }))
})

t.test('shape', async (t) => {
  t.match(codec.scope('acme', 'task-unified-1757169743-7cvnl5zw'), /^task-unified-1757169743-7cvnl5zw\.[A-Za-z0-9_-]{22}$/)
})

t.test('sha256Hmac is HMAC-SHA256: it agrees with createHmac on any key and message', async (t) => {
  const key = fc.oneof(fc.string({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)))
  fc.assert(fc.property(key, fc.string({ maxLength: 300 }), (secret, message) =>
    sha256Hmac(secret)(message) === createHmac('sha256', secret).update(message).digest('hex')), { numRuns: 2000 })
  t.pass('2000 cases, keys from empty to three blocks long')
})

t.test('ids minted with createHmac (before the one-shot HMAC) still verify, byte for byte the same', async (t) => {
  const legacyTag = createHmac('sha256', secret).update('acme').update('\0').update('task-unified-1-abc').digest().subarray(0, 16).toString('base64url')
  t.equal(codec.scope('acme', 'task-unified-1-abc'), `task-unified-1-abc.${legacyTag}`)
  t.equal(codec.unscope('acme', `task-unified-1-abc.${legacyTag}`), 'task-unified-1-abc')
})

t.test('the verified-pair cache answers as verification would, and only for the same tenant', async (t) => {
  const uncached = createTaskIdCodec({ secrets: [secret], verifiedCacheSize: 0 })
  const cached = createTaskIdCodec({ secrets: [secret], verifiedCacheSize: 50 })
  fc.assert(fc.property(tenantId, tenantId, upstreamId, fc.boolean(), (owner, other, id, forge) => {
    const scoped = forge ? id : codec.scope(owner, id)
    for (const who of [owner, other, owner, other]) {
      if (cached.unscope(who, scoped) !== uncached.unscope(who, scoped)) return false
    }
    return true
  }), { numRuns: 2000 })
  const scoped = codec.scope('acme', 'task-1')
  t.equal(cached.unscope('acme', scoped), 'task-1')
  t.equal(cached.unscope('acme', scoped), 'task-1', 'from the cache')
  t.equal(cached.unscope('acme2', scoped), null, 'a cached pair does not verify for another tenant')
  t.equal(cached.unscope('acm', 'e\0' + scoped), null, 'nor for a tenant and id that concatenate to the same key')
})
