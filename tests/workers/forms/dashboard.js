// A test fixture for rtworker: a one-file module Worker as pasted in the dashboard.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (request.headers.get("Upgrade")?.toLowerCase() === "websocket") {
      return fetch(new Request(new URL(url.pathname + url.search, env.SUPABASE_URL), request));
    }
    return new Response("Not found", { status: 404 });
  },
};
