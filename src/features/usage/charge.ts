import type { CreateGenerationBody } from '../../schemas/generation.ts'
import { effectiveRequest } from '../../models/index.ts'

/**
 * What one create will cost, known before the upstream is called, so that
 * admission can reserve it. Video-seconds are exact (duration × n). Credits
 * are an estimate: the upstream's price list is not published, so this uses
 * the rates its answers show (per second by quality, ×1.5 with audio, the
 * default); the reservation is settled to the upstream's own
 * `usage.credits_reserved` as soon as the create answers.
 */
export interface CreateCharge {
  /** credits × 1000, as an integer: sums stay exact */
  creditsMilli: number
  videoSeconds: number
}

const creditsPerSecond: Readonly<Record<string, number>> = { '720p': 1.6, '1080p': 2, '4k': 4 }
const audioFactor = 1.5

export function createChargeOf (body: Pick<CreateGenerationBody, 'duration' | 'generation_type' | 'n' | 'quality' | 'generate_audio'>): CreateCharge {
  const { n, duration, quality } = effectiveRequest(body)
  // An unknown quality (a model added before its price) is estimated at the lowest rate.
  const perSecond = creditsPerSecond[quality] ?? creditsPerSecond['720p'] as number
  const credits = duration * perSecond * (body.generate_audio === false ? 1 : audioFactor) * n
  return { creditsMilli: toMilli(credits), videoSeconds: duration * n }
}

export function toMilli (credits: number): number {
  return Math.round(credits * 1000)
}

export function fromMilli (creditsMilli: number): number {
  return Math.round(creditsMilli) / 1000
}
