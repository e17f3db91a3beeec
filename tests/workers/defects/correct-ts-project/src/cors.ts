export function withCors(response: Response, origin: string): Response {
  // A 101 carries the WebSocket: hand it back untouched.
  if (response.status === 101 || response.webSocket) {
    return response;
  }
  const headers = new Headers(response.headers);
  headers.set("Access-Control-Allow-Origin", origin);
  headers.set("Access-Control-Allow-Headers", "apikey, authorization, content-type, x-client-info");
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}
