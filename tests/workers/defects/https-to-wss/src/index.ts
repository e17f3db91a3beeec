import { Env, realtimeUrl, restUrl } from "./upstream";

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);

    if (request.headers.get("Upgrade")?.toLowerCase() === "websocket") {
      const target = realtimeUrl(env, url);
      return fetch(target, request);
    }

    return fetch(new Request(restUrl(env, url), request));
  },
};
