// WebSocket relay: the Worker holds both sockets so it can log traffic.
export default {
  async fetch(request, env) {
    if (request.headers.get("Upgrade") !== "websocket") {
      const url = new URL(request.url);
      return fetch(new Request(new URL(url.pathname + url.search, env.SUPABASE_URL), request));
    }

    const url = new URL(request.url);
    const upstreamUrl = new URL(url.pathname + url.search, env.SUPABASE_URL);
    upstreamUrl.protocol = upstreamUrl.protocol === "https:" ? "wss:" : "ws:";

    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    const upstream = new WebSocket(upstreamUrl.toString());

    server.addEventListener("message", (event) => {
      if (upstream.readyState === WebSocket.OPEN) {
        upstream.send(event.data);
      }
    });
    upstream.addEventListener("message", (event) => server.send(event.data));
    server.addEventListener("close", () => upstream.close(1000, "client closed"));
    upstream.addEventListener("close", () => server.close(1000, "upstream closed"));

    return new Response(null, { status: 101, webSocket: client });
  },
};
