addEventListener("fetch", (event) => {
  event.respondWith(proxy(event.request));
});

async function proxy(request) {
  const url = new URL(request.url);
  const target = SUPABASE_URL + url.pathname;
  const init = {
    method: request.method,
    headers: request.headers,
    body: request.body,
  };
  return fetch(new Request(target, init));
}
