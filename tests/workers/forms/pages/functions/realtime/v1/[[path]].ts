// Realtime's WebSocket, passed through to SUPABASE_URL: /realtime/v1/<path...>?<query>.
interface Env {
  SUPABASE_URL: string;
}

export async function onRequest(context: { request: Request; env: Env; params: { path?: string[] } }): Promise<Response> {
  const { request, env, params } = context;
  if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
    return Response.json({ path: params.path ?? [] });
  }
  const url = new URL(request.url);
  return fetch(new Request(new URL(url.pathname + url.search, env.SUPABASE_URL), request));
}
