// The corrected Worker for the design "Browser -> Cloudflare Worker -> Supabase Realtime".
//
// A WebSocket upgrade is passed through to SUPABASE_URL with its path and query verbatim:
//
//     return fetch(new Request(upstreamURL, request));
//
// The request keeps its method and headers (Upgrade, Sec-WebSocket-Version/-Protocol, cookies, ...); when
// the upstream answers 101 the Response carries a `webSocket` and returning it unchanged "establishes a
// WebSocket connection proxied through a Worker" (cloudflare-docs workers/runtime-apis/response.mdx).
// Any other answer (Realtime's 401 `{"error": "API key is missing"}`, 403, 404 `Tenant not found`, 429)
// reaches the client as the upstream sent it, status and JSON body. No JavaScript runs per frame, so
// frames, binary kinds, close codes and the subprotocol answer pass untouched.
//
// What the design's Worker got wrong and this one does not (failure catalog A.5): `request.webSocket`
// (D1: no such property), returning an accepted socket (D2), the query string dropped (D4: apikey and vsn
// lost), the path rewritten (D5), frames dropped before the upstream is open (D6), close codes that make
// close() throw (D7), 101 before the upstream answered (D8), binary frames turned into Blobs (D9).
//
// Supabase's HTTP APIs go to SUPABASE_URL the same way (SUPABASE_PATHS), so a page can be given the
// Worker's origin as its project URL: createClient(workerOrigin, key).
//
// Everything else goes to the site, as the design's Hono app did:
//   - env.ASSETS (Workers static assets, `[assets]` in wrangler.toml) if bound;
//   - else env.SITE_URL if set (the site's origin; path and query kept), e.g. for local runs;
//   - else 404 saying so. A site with its own handler (the design's `app.fetch(request, env, ctx)`)
//     calls it in `site()` below.
//
// Configuration: `wrangler secret put SUPABASE_URL` (https://<ref>.supabase.co; http://127.0.0.1:PORT
// for a local server). Nothing here logs the request URL's query (it carries the apikey) or any header.

// The path prefixes supabase-js puts under the project URL (supabase-js SupabaseClient.ts, constructor:
// new URL('realtime/v1' | 'auth/v1' | 'storage/v1' | 'functions/v1', baseUrl), and 'rest/v1' for
// PostgrestClient), and pg_graphql's endpoint.
const SUPABASE_PATHS = ["/realtime/v1", "/rest/v1", "/auth/v1", "/storage/v1", "/functions/v1", "/graphql/v1"];

export default {
  async fetch(request, env, ctx) {
    const upgrade = request.headers.get("Upgrade");
    if (upgrade !== null && upgrade.toLowerCase() === "websocket") {
      return supabase(request, env, true);
    }
    const path = new URL(request.url).pathname;
    if (SUPABASE_PATHS.some((p) => path === p || path.startsWith(p + "/"))) {
      return supabase(request, env, false);
    }
    return site(request, env, ctx);
  },
};

// Checks SUPABASE_URL: an http(s) origin (scheme, host, optional port), nothing else. Returns the URL
// object, or a string saying what is wrong (the 500 body).
function supabaseOrigin(value) {
  if (!value) {
    return "SUPABASE_URL is not set: run `wrangler secret put SUPABASE_URL` (https://<ref>.supabase.co)";
  }
  let url;
  try {
    url = new URL(value.trim());
  } catch {
    return "SUPABASE_URL is not a URL: expected https://<ref>.supabase.co (or http://127.0.0.1:PORT)";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return (
      `SUPABASE_URL must be an http(s) URL, not ${url.protocol}//...: ` +
      "expected https://<ref>.supabase.co (the Worker forwards upgrades with fetch, which speaks http(s))"
    );
  }
  if (url.username || url.password) {
    return "SUPABASE_URL must not contain credentials";
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) {
    return "SUPABASE_URL must be the project URL without a path or query: the client's own path and query are kept";
  }
  return url;
}

// `incoming`'s path and query, verbatim, on `origin` (scheme, host and port; Host follows the URL). Set
// as properties, not resolved as a relative URL: a path starting with "//" stays a path on `origin`.
function sameOrigin(origin, incoming) {
  const url = new URL(origin.origin);
  url.pathname = incoming.pathname;
  url.search = incoming.search;
  return url;
}

// Passes `request` to SUPABASE_URL, path and query verbatim, and returns the upstream's answer as it is.
async function supabase(request, env, upgrade) {
  const what = upgrade ? "realtime upgrade" : "supabase request";
  const origin = supabaseOrigin(env.SUPABASE_URL);
  if (typeof origin === "string") {
    return new Response(origin + "\n", { status: 500, headers: { "content-type": "text/plain" } });
  }
  const incoming = new URL(request.url);
  const upstream = sameOrigin(origin, incoming);
  try {
    const response = await fetch(new Request(upstream, request));
    if (response.status >= 400 || (upgrade && response.status !== 101)) {
      // Visible in `wrangler tail`; the path only (the query carries the apikey).
      console.log(`${what} ${incoming.pathname}: upstream answered ${response.status}`);
    }
    // Returned as it is: re-wrapped with a plain init (new Response(response.body, {status, headers}))
    // it would lose `webSocket`, and workerd refuses a 101 without one.
    return response;
  } catch (e) {
    const why = e && e.message ? e.message : String(e);
    console.log(`${what} ${incoming.pathname}: upstream unreachable: ${why}`);
    return new Response(`Worker could not reach SUPABASE_URL (${origin.host}): ${why}\n`, {
      status: 502,
      headers: { "content-type": "text/plain" },
    });
  }
}

async function site(request, env, ctx) {
  // A site with its own handler calls it here, e.g. the design's Hono app:
  //     return app.fetch(request, env, ctx);
  if (env.ASSETS) {
    return env.ASSETS.fetch(request);
  }
  if (env.SITE_URL) {
    return fetch(new Request(sameOrigin(new URL(env.SITE_URL), new URL(request.url)), request));
  }
  return new Response(
    "Not found: this Worker passes WebSocket upgrades and Supabase's APIs to SUPABASE_URL; no site is " +
      "configured for other requests (bind [assets] in wrangler.toml, set SITE_URL, or call your app in site()).\n",
    { status: 404, headers: { "content-type": "text/plain" } },
  );
}
