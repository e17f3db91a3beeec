import { connectUpstream } from "./connect";

interface Env {
  SUPABASE_URL: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("expected a WebSocket", { status: 426 });
    }
    const upstream = await connectUpstream(request, env.SUPABASE_URL);
    if (!upstream) {
      return new Response("upstream refused the upgrade", { status: 502 });
    }

    const pair = new WebSocketPair();
    const client = pair[0];
    const server = pair[1];
    server.accept();

    server.addEventListener("message", (event) => upstream.send(event.data));
    upstream.addEventListener("message", (event) => server.send(event.data));

    return new Response(null, { status: 101, webSocket: client });
  },
};
