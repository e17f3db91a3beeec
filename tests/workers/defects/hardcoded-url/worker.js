const SUPABASE = "https://abcdefghijklmnopqrstu.supabase.co";

addEventListener("fetch", (event) => {
  event.respondWith(pass(event.request));
});

async function pass(request) {
  const url = new URL(request.url);
  const target = new URL(url.pathname + url.search, SUPABASE);
  try {
    return await fetch(new Request(target, request));
  } catch (err) {
    return new Response(`upstream unreachable: ${err}`, { status: 502 });
  }
}
