addEventListener("fetch", (event) => {
  event.respondWith(relay(event.request));
});

async function relay(request) {
  const url = new URL(request.url);
  const target = new URL(url.pathname + url.search, SUPABASE_URL);
  if (request.headers.get("Upgrade") !== "websocket") {
    return fetch(new Request(target, request));
  }

  const upstreamResponse = await fetch(target.toString(), { headers: { Upgrade: "websocket" } });
  const upstream = upstreamResponse.webSocket;
  if (!upstream) {
    return new Response("no upgrade", { status: 502 });
  }
  upstream.accept();

  const [client, server] = Object.values(new WebSocketPair());
  server.accept();

  server.addEventListener("message", (e) => upstream.send(e.data));
  upstream.addEventListener("message", (e) => server.send(e.data));
  server.addEventListener("close", (e) => upstream.close(e.code, e.reason));
  upstream.addEventListener("close", (e) => server.close(e.code, e.reason));

  return new Response(null, { status: 101, webSocket: client });
}
