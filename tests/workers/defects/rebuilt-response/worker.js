// Adds CORS headers to everything coming back from Supabase.
addEventListener("fetch", (event) => {
  event.respondWith(handle(event.request));
});

const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "apikey, authorization, content-type, x-client-info",
  "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
};

async function handle(request) {
  if (request.method === "OPTIONS") {
    return new Response(null, { status: 204, headers: CORS });
  }
  const url = new URL(request.url);
  const upstream = new URL(url.pathname + url.search, SUPABASE_URL);
  const response = await fetch(new Request(upstream, request));

  const headers = new Headers(response.headers);
  for (const [name, value] of Object.entries(CORS)) {
    headers.set(name, value);
  }
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
}
