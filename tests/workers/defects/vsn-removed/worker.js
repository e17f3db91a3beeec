addEventListener("fetch", (event) => {
  event.respondWith(forward(event.request));
});

async function forward(request) {
  const url = new URL(request.url);
  const target = new URL(url.pathname, SUPABASE_URL);
  target.search = url.search;
  // Old gateway rejected unknown params.
  target.searchParams.delete("vsn");
  return fetch(new Request(target, request));
}
