import type { FastifyInstance, FastifyRequest } from 'fastify'
import { finished } from 'node:stream/promises'
import type { MultipartFile } from '@fastify/multipart'
import { gatewayError } from '../../errors/table.ts'

/** The one form field that may carry a file: OpenAI's `input_reference`. */
export const uploadField = 'input_reference'

/** An uploaded file as read from the form: at most the image limit, never more. */
export interface ReceivedFile {
  field: string
  fileName: string
  /** null for a file in another field than input_reference (drained, not kept) */
  bytes: Buffer | null
}

const received = new WeakMap<FastifyRequest, ReceivedFile>()

export function receivedFileOf (request: FastifyRequest): ReceivedFile | undefined {
  return received.get(request)
}

/**
 * @fastify/multipart's onFile: an `input_reference` file is read into memory up
 * to `maxBytes` (busboy stops counting there and the part is refused 413, so
 * no more is ever held); a file in any other field is drained and refused
 * later (preValidation), with the form's text fields parsed first.
 */
export async function receiveFile (request: FastifyRequest, part: MultipartFile, maxBytes: number): Promise<void> {
  if (part.fieldname !== uploadField) {
    received.set(request, { field: part.fieldname, fileName: part.filename, bytes: null })
    part.file.resume()
    await finished(part.file)
    return
  }
  let bytes: Buffer
  try {
    bytes = await part.toBuffer()
  } catch (error) {
    if ((error as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw gatewayError('image_too_large', { args: [maxBytes], param: uploadField, cause: error })
    throw error
  }
  received.set(request, { field: part.fieldname, fileName: part.filename, bytes })
}

/** What the video provider takes (upstream-facts.md: .jpg/.jpeg/.png/.webp), by the file's own first bytes, not its declared type. */
export function sniffImageType (bytes: Buffer): 'image/png' | 'image/jpeg' | 'image/webp' | null {
  if (bytes.length >= 8 && bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png'
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg'
  if (bytes.length >= 12 && bytes.toString('latin1', 0, 4) === 'RIFF' && bytes.toString('latin1', 8, 12) === 'WEBP') return 'image/webp'
  return null
}

const extensions = { 'image/png': 'png', 'image/jpeg': 'jpg', 'image/webp': 'webp' } as const

/**
 * The uploaded image hosted where the upstream can fetch it: the upstream's
 * own files API (upstream/files.ts). Refused, before anything is sent, where
 * uploads are off or the file is no image the provider takes.
 */
export async function hostUploadedImage (fastify: FastifyInstance, request: FastifyRequest, file: ReceivedFile & { bytes: Buffer }): Promise<string> {
  if (!fastify.upstreamFiles.available) {
    throw gatewayError('invalid_request', {
      args: ['File uploads are not enabled on this gateway (EVOLINK_FILES_URL=off); send input_reference as { "image_url": "https://…" } (in a form: input_reference[image_url]).'],
      param: uploadField
    })
  }
  const mimeType = sniffImageType(file.bytes)
  if (mimeType === null) {
    throw gatewayError('invalid_request', { args: [`The uploaded ${uploadField} is not a JPEG, PNG or WebP image.`], param: uploadField })
  }
  // The name the upstream stores is ours (the caller's could be anything): the type decides the extension.
  const fileName = `input-reference.${extensions[mimeType]}`
  const uploaded = await fastify.upstreamFiles.upload({ bytes: file.bytes, mimeType, fileName, request })
  return uploaded.url
}
