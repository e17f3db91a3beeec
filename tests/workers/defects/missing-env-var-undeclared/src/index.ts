import { corsHeaders } from "./origins";

interface Env {
  SUPABASE_URL: string;
  ALLOWED_ORIGINS: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const allowed = env.ALLOWED_ORIGINS.split(",").map((o) => o.trim());
    const url = new URL(request.url);
    const upstream = new URL(url.pathname + url.search, env.SUPABASE_URL);

    if (request.method === "OPTIONS") {
      return new Response(null, { status: 204, headers: corsHeaders(request.headers.get("Origin"), allowed) });
    }
    if (request.headers.get("Upgrade") === "websocket") {
      return fetch(new Request(upstream, request));
    }

    const response = await fetch(new Request(upstream, request));
    const headers = new Headers(response.headers);
    for (const [k, v] of Object.entries(corsHeaders(request.headers.get("Origin"), allowed))) headers.set(k, v);
    return new Response(response.body, { status: response.status, headers });
  },
};
