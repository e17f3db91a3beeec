export interface Env {
  SUPABASE_URL: string;
}

// Realtime is a WebSocket, so the socket URL gets the WebSocket scheme.
export function realtimeUrl(env: Env, incoming: URL): string {
  const base = env.SUPABASE_URL.replace("https://", "wss://");
  return `${base}${incoming.pathname}${incoming.search}`;
}

export function restUrl(env: Env, incoming: URL): string {
  return `${env.SUPABASE_URL}${incoming.pathname}${incoming.search}`;
}
