interface Env {
  SUPABASE_URL: string;
  SUPABASE_ANON_KEY: string;
}

// Keep the anon key out of the browser bundle: the function adds it.
export const onRequest: PagesFunction<Env> = async ({ request, env }) => {
  const incoming = new URL(request.url);
  const target = new URL(incoming.pathname + incoming.search, env.SUPABASE_URL);
  target.searchParams.set("apikey", env.SUPABASE_ANON_KEY);

  const upstream = new Request(target.toString(), request);
  return fetch(upstream);
};
