// Pin the protocol version so the server always speaks JSON.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const target = new URL(url.pathname + url.search, env.SUPABASE_URL);
    if (url.pathname.endsWith("/websocket")) {
      target.searchParams.set("vsn", "1.0.0");
    }
    return fetch(new Request(target, request));
  },
};
