import t from 'tap'
import fc from 'fast-check'
import { createTaskIdCodec } from '../../src/lib/task-id.ts'

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
