// Opens the Supabase side with fetch(): the socket is connected when this resolves.
export async function connectUpstream(request: Request, supabaseUrl: string): Promise<WebSocket | null> {
  const url = new URL(request.url);
  const target = new URL(url.pathname + url.search, supabaseUrl);
  const response = await fetch(target.toString(), { headers: { Upgrade: "websocket" } });
  const socket = response.webSocket;
  if (!socket) return null;
  socket.accept();
  return socket;
}
