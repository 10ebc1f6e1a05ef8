import t from 'tap'
import { SignJWT } from 'jose'
import { createBrowserTokenSigner, looksLikeToken, TokenRejection, type TokenClaims } from '../../../src/features/browser-tokens/token.ts'

const secret = 'test-gateway-secret-0123456789-abcdefghij'
const claims: TokenClaims = { operations: ['read'], maxCreates: 3, models: ['m'], qualities: ['720p'], maxDuration: 6, endUser: 'u-1', origin: 'https://app.example.com' }

async function rejection (promise: Promise<unknown>): Promise<TokenRejection> {
  try {
    await promise
  } catch (error) {
    if (error instanceof TokenRejection) return error
    throw error
  }
  throw new Error('expected a rejection')
}

t.test('a minted token verifies to the same grant', async (t) => {
  const signer = createBrowserTokenSigner({ secrets: [secret], now: () => 1_700_000_000_000 })
  const { token, grant } = await signer.mint({ tenantId: 'acme', ttlSeconds: 600, claims })
  t.ok(looksLikeToken(token))
  t.same(await signer.verify(token), grant)
  t.same(grant, { ...claims, tenantId: 'acme', tokenId: grant.tokenId, expiresAt: 1_700_000_600 })
  t.match(grant.tokenId, /^[0-9a-f-]{36}$/)
  const minimal = await signer.mint({ tenantId: 'acme', ttlSeconds: 60, claims: { operations: ['create'], maxCreates: null, models: null, qualities: null, maxDuration: null, endUser: null, origin: null } })
  const payload = JSON.parse(Buffer.from(minimal.token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
  t.same(Object.keys(payload).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'ops', 'sub'], 'absent narrowing is absent from the token')
})

t.test('looksLikeToken: tenant keys and junk are not tokens', async (t) => {
  t.notOk(looksLikeToken('vgk_abcdef'))
  t.notOk(looksLikeToken('eyJ.only-two'))
  t.notOk(looksLikeToken('eyJa.b.c d'))
  t.ok(looksLikeToken('eyJa.b.c'))
})

t.test('refusals: expired, tampered, other issuers, wrong claims', async (t) => {
  let now = 1_700_000_000_000
  const signer = createBrowserTokenSigner({ secrets: [secret], now: () => now })
  const { token } = await signer.mint({ tenantId: 'acme', ttlSeconds: 60, claims })
  now += 66_000
  const expired = await rejection(signer.verify(token))
  t.equal(expired.reason, 'expired')
  t.equal(expired.message, 'The token expired at 2023-11-14T22:14:20.000Z; get a new one.')
  now = 1_700_000_000_000

  const key = new Uint8Array(32)
  const header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }
  // Right key id, wrong key: a forgery that guessed the header.
  const forged = await new SignJWT({ ops: ['create'] }).setProtectedHeader({ alg: 'HS256', kid: header.kid, typ: 'vg-browser+jwt' })
    .setIssuer('video-gateway').setAudience('video-gateway:browser').setSubject('acme').setJti('x').setIssuedAt(1_700_000_000).setExpirationTime(1_700_000_600).sign(key)
  t.equal((await rejection(signer.verify(forged))).reason, 'invalid')
  const noKid = await new SignJWT({ ops: ['create'] }).setProtectedHeader({ alg: 'HS256' }).sign(key)
  t.equal((await rejection(signer.verify(noKid))).message, 'The token was not issued by this gateway (unknown key id).')
  t.equal((await rejection(signer.verify('eyJhbGciOiJub25lIn0.e30.'))).reason, 'invalid', 'alg none')
  t.equal((await rejection(signer.verify('not a token'))).reason, 'invalid')

  // Another replica with the same secret: its tokens are this one's.
  const replica = createBrowserTokenSigner({ secrets: [secret], now: () => now })
  const { token: fromReplica } = await replica.mint({ tenantId: 'acme', ttlSeconds: 60, claims: { ...claims, operations: ['read', 'create'] } })
  t.same((await signer.verify(fromReplica)).operations, ['read', 'create'])
  t.throws(() => createBrowserTokenSigner({ secrets: [] }), /at least one secret/)
})

t.test('rotation: every listed secret verifies, the first signs', async (t) => {
  const old = createBrowserTokenSigner({ secrets: [secret] })
  const rotated = createBrowserTokenSigner({ secrets: ['a-brand-new-secret-0123456789-abcdefghijkl', secret] })
  const { token: issuedBefore } = await old.mint({ tenantId: 'acme', ttlSeconds: 60, claims })
  const { token: issuedAfter } = await rotated.mint({ tenantId: 'acme', ttlSeconds: 60, claims })
  t.equal((await rotated.verify(issuedBefore)).tenantId, 'acme')
  t.equal((await old.verify(issuedAfter).catch((error: TokenRejection) => error.reason)), 'invalid', 'the old gateway does not know the new key')
})
