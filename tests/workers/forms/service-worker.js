// A test fixture for rtworker: a dashboard-style service-worker Worker; its bindings are globals.
/* global SUPABASE_URL */
addEventListener("fetch", (event) => {
  event.respondWith(handle(event.request));
});

async function handle(request) {
  const url = new URL(request.url);
  if (request.headers.get("Upgrade")?.toLowerCase() === "websocket") {
    return fetch(new Request(new URL(url.pathname + url.search, SUPABASE_URL), request));
  }
  if (url.pathname === "/debug/env") {
    return new Response(JSON.stringify({ form: "service-worker", greeting: typeof GREETING === "string" ? GREETING : null }), {
      headers: { "content-type": "application/json" },
    });
  }
  return new Response("Not found", { status: 404 });
}
