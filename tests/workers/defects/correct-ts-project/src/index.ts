import { withCors } from "./cors";

interface Env {
  SUPABASE_URL: string;
  ALLOWED_ORIGIN: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const upstream = new URL(url.pathname + url.search, env.SUPABASE_URL);

    // Upgrades go straight through: the Response from fetch() carries the upstream WebSocket.
    if (request.headers.get("Upgrade") === "websocket") {
      return fetch(new Request(upstream, request));
    }

    const response = await fetch(new Request(upstream, request));
    return withCors(response, env.ALLOWED_ORIGIN);
  },
};
