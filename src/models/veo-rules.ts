import { gatewayError } from '../errors/table.ts'
import type { VideoGenerationRequest } from '../schemas/generated/veo-3.1-fast.ts'

/**
 * Veo 3.1 rules that JSON Schema does not express (from the upstream docs),
 * checked before an upstream call is spent on a request that must fail:
 * - TEXT takes no images; FIRST&LAST takes 1 to 2; REFERENCE takes 1 to 3,
 *   only 8 s and only 16:9;
 * - without `generation_type` the mode follows the image count (0 → TEXT, 1–2 → FIRST&LAST),
 *   so 3 images need REFERENCE said explicitly;
 * - `resize_mode` applies to image-to-video only.
 * Each violation names the field at fault.
 */
export function checkVeoRules (body: VideoGenerationRequest): void {
  const imageCount = body.image_urls?.length ?? 0
  const mode = body.generation_type ?? (imageCount === 0 ? 'TEXT' : 'FIRST&LAST')
  const invalid = (param: string, message: string): never => {
    throw gatewayError('invalid_request', { args: [message], param })
  }

  if (mode === 'TEXT') {
    if (imageCount > 0) invalid('image_urls', 'generation_type TEXT takes no image_urls; use FIRST&LAST or REFERENCE for image-to-video.')
  } else if (mode === 'FIRST&LAST') {
    if (imageCount === 0) invalid('image_urls', 'generation_type FIRST&LAST needs 1 or 2 image_urls.')
    if (imageCount > 2) {
      invalid(body.generation_type === undefined ? 'generation_type' : 'image_urls',
        body.generation_type === undefined
          ? '3 image_urls need generation_type REFERENCE (without generation_type, images mean FIRST&LAST, which takes 1 or 2).'
          : 'generation_type FIRST&LAST takes at most 2 image_urls.')
    }
  } else {
    if (imageCount === 0) invalid('image_urls', 'generation_type REFERENCE needs 1 to 3 image_urls.')
    if (body.duration !== undefined && body.duration !== 8) invalid('duration', 'generation_type REFERENCE only supports duration 8.')
    if (body.aspect_ratio !== undefined && body.aspect_ratio !== '16:9') invalid('aspect_ratio', 'generation_type REFERENCE only supports aspect_ratio "16:9".')
  }
  if (body.resize_mode !== undefined && imageCount === 0) {
    invalid('resize_mode', 'resize_mode applies to image-to-video only; remove it or add image_urls.')
  }
}
