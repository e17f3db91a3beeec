interface Env {
  SUPABASE_URL: string;
}

function closeCode(code: number): number {
  // 1005 and 1006 are reserved: they can be received, never sent.
  return code === 1005 || code === 1006 ? 1000 : code;
}

export const onRequest: PagesFunction<Env> = async (context) => {
  const { request, env } = context;
  const url = new URL(request.url);
  const target = new URL(url.pathname + url.search, env.SUPABASE_URL);
  if (request.headers.get("Upgrade") !== "websocket") {
    return fetch(new Request(target, request));
  }

  const upstreamResponse = await fetch(target.toString(), { headers: { Upgrade: "websocket" } });
  const upstream = upstreamResponse.webSocket;
  if (!upstream) return new Response("no upgrade", { status: 502 });
  upstream.accept();

  const [client, server] = Object.values(new WebSocketPair());
  server.accept();

  server.addEventListener("message", (event) => {
    console.log("client ->", String(event.data).slice(0, 200));
    upstream.send(String(event.data));
  });
  upstream.addEventListener("message", (event) => {
    server.send(event.data);
  });
  server.addEventListener("close", (event) => upstream.close(closeCode(event.code), event.reason));
  upstream.addEventListener("close", (event) => server.close(closeCode(event.code), event.reason));

  return new Response(null, { status: 101, webSocket: client });
};
