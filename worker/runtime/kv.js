// rtworker's KV store: one in-memory namespace, the service a workerd `kvNamespace` binding talks to.
// The protocol is the one workerd's KvNamespace speaks (workerd src/workerd/api/kv.c++): get
// GET https://fake-host/<key>?urlencoded=true (404: no value; the CF-KV-Metadata header carries the
// metadata), put PUT the same URL with ?expiration=<unix s> or ?expiration_ttl=<s> and the metadata as
// CF-KV-Metadata, delete DELETE it, list GET https://fake-host/?key_count_limit=&prefix=&cursor= (JSON
// {keys: [{name, expiration?, metadata?}], list_complete, cursor?}), bulk get POST /bulk/get with
// {keys, type, withMetadata}. Values live as long as rtworker's workerd runs.

const store = new Map(); // key -> {value: ArrayBuffer, expiration?: number, metadata?: any}

function live(key) {
  const entry = store.get(key);
  if (entry && entry.expiration !== undefined && entry.expiration * 1000 <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry;
}

function keyOf(url) {
  return decodeURIComponent(url.pathname.slice(1));
}

function listing(url) {
  const prefix = url.searchParams.get("prefix") ?? "";
  const limit = Math.min(Number(url.searchParams.get("key_count_limit") ?? 1000) || 1000, 1000);
  const start = Number(url.searchParams.get("cursor") ?? 0) || 0;
  const names = [...store.keys()].filter((k) => k.startsWith(prefix) && live(k)).sort();
  const page = names.slice(start, start + limit);
  const keys = page.map((name) => {
    const { expiration, metadata } = store.get(name);
    return { name, ...(expiration !== undefined && { expiration }), ...(metadata !== undefined && { metadata }) };
  });
  const complete = start + limit >= names.length;
  return { keys, list_complete: complete, ...(!complete && { cursor: String(start + limit) }), cacheStatus: null };
}

async function bulk(request) {
  const { keys, type, withMetadata } = await request.json();
  const out = {};
  for (const key of keys) {
    const entry = live(key);
    let value = null;
    if (entry) {
      const text = new TextDecoder().decode(entry.value);
      value = type === "json" ? JSON.parse(text) : text;
    }
    out[key] = withMetadata ? { value, metadata: entry?.metadata ?? null } : value;
  }
  return Response.json(out);
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (request.method === "POST" && url.pathname === "/bulk/get") return bulk(request);
    if (request.method === "GET" && url.pathname === "/") return Response.json(listing(url));
    const key = keyOf(url);
    if (request.method === "GET") {
      const entry = live(key);
      if (!entry) return new Response(null, { status: 404 });
      const headers = {};
      if (entry.metadata !== undefined) headers["CF-KV-Metadata"] = JSON.stringify(entry.metadata);
      return new Response(entry.value, { headers });
    }
    if (request.method === "PUT") {
      const now = Date.now() / 1000;
      const ttl = url.searchParams.get("expiration_ttl");
      const at = url.searchParams.get("expiration");
      const expiration = ttl !== null ? Math.floor(now + Number(ttl)) : at !== null ? Number(at) : undefined;
      const meta = request.headers.get("CF-KV-Metadata");
      const value = await request.arrayBuffer();
      store.set(key, { value, expiration, metadata: meta === null ? undefined : JSON.parse(meta) });
      return new Response(null, { status: 200 });
    }
    if (request.method === "DELETE") {
      store.delete(key);
      return new Response(null, { status: 200 });
    }
    return new Response("rtworker kv: unsupported request", { status: 405 });
  },
};
