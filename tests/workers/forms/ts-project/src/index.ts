import type { Env } from "./lib/types";
import { countUpgrade } from "./lib/counter";
import { isUpgrade, upstreamUrl } from "./lib/upstream";

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (isUpgrade(request)) {
      await countUpgrade(env.CACHE);
      return fetch(new Request(upstreamUrl(request, env.SUPABASE_URL), request));
    }
    const url = new URL(request.url);
    if (url.pathname === "/debug/env") {
      const { value, metadata } = await env.CACHE.getWithMetadata("upgrades");
      const listed = await env.CACHE.list({ prefix: "up" });
      return Response.json({
        allowedOrigins: env.ALLOWED_ORIGINS,
        sharedSecret: env.SHARED_SECRET,
        debugToken: env.DEBUG_TOKEN,
        limits: env.LIMITS,
        upgrades: value,
        hasMetadata: typeof (metadata as { last?: number } | null)?.last === "number",
        listed: listed.keys.map((k) => k.name),
      });
    }
    return new Response("Not found", { status: 404 });
  },
};
