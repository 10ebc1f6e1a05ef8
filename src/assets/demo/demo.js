// The demo page's whole logic: get a short-lived token, create a task, follow it
// over server-sent events, play the result. Plain browser JavaScript, no build step.

const form = document.getElementById('generate-form')
const button = document.getElementById('generate')
const tokenField = document.getElementById('token')
const message = document.getElementById('message')
const progressSection = document.getElementById('progress-section')
const statusText = document.getElementById('status')
const percentText = document.getElementById('percent')
const progressBar = document.getElementById('progress')
const taskIdText = document.getElementById('task-id')
const resultSection = document.getElementById('result-section')
const video = document.getElementById('video')

/** The token in use and when it expires (unix seconds); null until the first Generate. */
let session = null
/** Whether this gateway mints demo tokens (simulator mode); learned on the first try. */
let demoTokensAvailable = true

function show (text, kind = 'error') {
  message.textContent = text
  message.className = kind
  message.hidden = false
}

function clearMessage () {
  message.hidden = true
  message.textContent = ''
}

/** The error format's message, or a plain description when the body is not ours. */
async function errorMessage (response) {
  try {
    const body = await response.json()
    if (body && body.error && typeof body.error.message === 'string') return body.error
  } catch {}
  return { code: 'http_' + response.status, message: `The gateway answered ${response.status}.` }
}

async function currentToken () {
  const pasted = tokenField.value.trim()
  if (pasted !== '' && (session === null || session.token !== pasted)) return pasted
  const now = Date.now() / 1000
  // Renew a little before the end, so that a stream does not start on a dying token.
  if (session !== null && session.expiresAt - now > 30) return session.token
  if (!demoTokensAvailable) return pasted === '' ? null : pasted
  const response = await fetch('/demo/token', { method: 'POST' })
  if (response.status === 404) {
    demoTokensAvailable = false
    document.getElementById('token-box').open = true
    return null
  }
  if (!response.ok) throw new Error((await errorMessage(response)).message)
  const minted = await response.json()
  session = { token: minted.token, expiresAt: minted.expires_at }
  tokenField.value = minted.token
  return minted.token
}

function showProgress (task) {
  statusText.textContent = task.status
  percentText.textContent = `${task.progress ?? 0}%`
  progressBar.value = task.progress ?? 0
}

function showResult (task) {
  if (task.status === 'completed' && Array.isArray(task.results) && task.results.length > 0) {
    video.src = task.results[0]
    resultSection.hidden = false
    show('Done: the video is playing below.', 'info')
    video.play().catch(() => {})
  } else if (task.status === 'failed') {
    show(`The generation failed: ${task.error?.message ?? 'no reason given'}`)
  }
}

/** Follows the task until it ends; EventSource cannot send headers, so the token goes in the query. */
function follow (taskId, token) {
  return new Promise((resolve) => {
    const events = new EventSource(`/v1/tasks/${encodeURIComponent(taskId)}/events?token=${encodeURIComponent(token)}`)
    let last = null
    events.addEventListener('task', (event) => {
      last = JSON.parse(event.data)
      showProgress(last)
    })
    events.addEventListener('end', () => {
      events.close()
      resolve(last)
    })
    events.addEventListener('error', (event) => {
      // An `event: error` from the gateway carries the error format; a bare error is the connection.
      if (typeof event.data === 'string') {
        events.close()
        show(JSON.parse(event.data).error.message)
        resolve(null)
      } else if (events.readyState === EventSource.CLOSED) {
        show('Lost the connection to the gateway while following the task.')
        resolve(null)
      }
    })
  })
}

async function generate (event) {
  event.preventDefault()
  clearMessage()
  resultSection.hidden = true
  video.removeAttribute('src')
  button.disabled = true
  try {
    const token = await currentToken()
    if (token === null) {
      show('This gateway does not mint demo tokens: paste a token from your backend (POST /v1/tokens).')
      return
    }
    const body = {
      model: 'veo-3.1-fast-generate-preview',
      prompt: document.getElementById('prompt').value,
      duration: Number(document.getElementById('duration').value),
      aspect_ratio: document.getElementById('aspect_ratio').value,
      quality: document.getElementById('quality').value
    }
    const response = await fetch('/v1/videos/generations', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
      body: JSON.stringify(body)
    })
    if (!response.ok) {
      const error = await errorMessage(response)
      if (error.code === 'token_expired') {
        // Forget it: the next Generate gets a fresh one.
        session = null
        tokenField.value = ''
        show(`Your session token has expired. Press Generate again for a new one. (${error.message})`)
      } else {
        show(error.message)
      }
      return
    }
    const task = await response.json()
    taskIdText.textContent = task.id
    progressSection.hidden = false
    showProgress(task)
    const final = await follow(task.id, token)
    if (final !== null) showResult(final)
  } catch (error) {
    show(`Could not reach the gateway: ${error.message}`)
  } finally {
    button.disabled = false
  }
}

form.addEventListener('submit', generate)
