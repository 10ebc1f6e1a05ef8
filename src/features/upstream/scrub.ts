/**
 * Removes secrets from text that came from elsewhere (an upstream error message
 * that echoes the Authorization header, say) before it is logged or passed on.
 */
const keyLike = /\b(?:sk-evo-|sk-|vgk_)[A-Za-z0-9_-]{6,}/g
const webhookSecret = /\bwhsec_[A-Za-z0-9+/=]{6,}/g
// The gateway's own callback URL carries a per-task token that must not leak either.
const callbackToken = /(\/callbacks\/evolink\/)[A-Za-z0-9_-]+/g
const bearer = /\bBearer\s+\S+/gi
// a browser token (JWT), e.g. in a URL's `?token=` quoted by some error
const jwtLike = /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g

export function createScrubber (secrets: readonly string[]): (text: string) => string {
  const exact = secrets.filter((secret) => secret.length >= 4)
  return (text) => {
    let scrubbed = text
    for (const secret of exact) scrubbed = scrubbed.replaceAll(secret, '[redacted]')
    return scrubbed.replace(bearer, 'Bearer [redacted]').replace(keyLike, '[redacted]').replace(jwtLike, '[redacted]').replace(webhookSecret, '[redacted]').replace(callbackToken, '$1[redacted]')
  }
}
