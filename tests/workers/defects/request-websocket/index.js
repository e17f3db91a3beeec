// Realtime proxy, pasted in the dashboard editor.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const target = new URL(url.pathname + url.search, env.SUPABASE_URL);

    if (request.headers.get("Upgrade") === "websocket") {
      const socket = request.webSocket;
      socket.accept();
      const upstream = await fetch(new Request(target, request));
      const server = upstream.webSocket;
      server.accept();
      socket.addEventListener("message", (event) => server.send(event.data));
      server.addEventListener("message", (event) => socket.send(event.data));
      socket.addEventListener("close", () => server.close(1000, "client left"));
      server.addEventListener("close", () => socket.close(1000, "server left"));
      return new Response(null, { status: 101, webSocket: socket });
    }

    return fetch(new Request(target, request));
  },
};
