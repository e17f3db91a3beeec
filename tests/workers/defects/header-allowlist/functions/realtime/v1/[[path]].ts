// Only forward the headers Supabase needs; drop cookies and everything else from the browser.
const FORWARDED_HEADERS = ["apikey", "authorization", "content-type", "x-client-info", "accept"];

export async function onRequest(context) {
  const { request, env } = context;
  const url = new URL(request.url);
  const target = `${env.SUPABASE_URL}${url.pathname}${url.search}`;

  const headers = new Headers();
  for (const name of FORWARDED_HEADERS) {
    const value = request.headers.get(name);
    if (value !== null) headers.set(name, value);
  }

  return fetch(target, {
    method: request.method,
    headers,
    body: request.method === "GET" || request.method === "HEAD" ? undefined : request.body,
  });
}
