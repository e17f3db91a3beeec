// rtworker's egress guard: the Worker's globalOutbound, so every fetch() and `new WebSocket()` it makes
// comes here first. Loopback (127.0.0.0/8, localhost, [::1]) goes on to the network service; anything else
// gets a 502 whose body says rtworker blocked it, and one line on workerd's output that rtworker shows,
// unless ALLOW_NET is true (rtworker --allow-net). An upgrade passes through as the upstream answers it.

const BLOCKED = "rtworker-egress-blocked ";

function loopback(hostname) {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (host === "[::1]" || host === "::1") return true;
  const m = host.match(/^(\d+)\.(\d+)\.(\d+)\.(\d+)$/);
  return m !== null && Number(m[1]) === 127 && m.slice(1).every((n) => Number(n) <= 255);
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (env.ALLOW_NET || loopback(url.hostname)) return fetch(request);
    console.log(BLOCKED + request.url);
    return new Response(
      `rtworker blocked this request to ${url.origin}: the Worker may reach loopback only (rtworker --allow-net lets it reach other addresses)\n`,
      { status: 502, headers: { "content-type": "text/plain; charset=utf-8", "x-rtworker-blocked": "1" } },
    );
  },
};
