/** `http://host:port`, with an IPv6 literal in brackets (RFC 3986 §3.2.2). */
export function httpUrl (host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
}
