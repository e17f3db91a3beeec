// Where a request goes upstream: SUPABASE_URL's origin with the request's own path and query.
export function upstreamUrl(request: Request, supabaseUrl: string): URL {
  const incoming = new URL(request.url);
  return new URL(incoming.pathname + incoming.search, supabaseUrl);
}

export function isUpgrade(request: Request): boolean {
  return request.headers.get("Upgrade")?.toLowerCase() === "websocket";
}
