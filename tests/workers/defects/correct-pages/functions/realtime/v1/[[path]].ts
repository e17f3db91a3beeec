interface Env {
  SUPABASE_URL: string;
}

// Everything under /realtime/v1/ goes to the project, path and query as they came.
export const onRequest: PagesFunction<Env> = async (context) => {
  const incoming = new URL(context.request.url);
  const target = new URL(context.env.SUPABASE_URL);
  target.pathname = incoming.pathname;
  target.search = incoming.search;
  return fetch(new Request(target.toString(), context.request));
};
