"""Pages Functions as one module Worker: the entry rtworker writes imports every function file of a
project's functions/ folder and routes requests to them the way Pages does.

The rules followed (workers-sdk packages/pages-functions/src/routing/filepath-routing.ts,
generateConfigFromFileTree() and compareRoutes(), which packages/wrangler/src/pages/functions/
filepath-routing.ts re-exports; the request loop of packages/wrangler/templates/pages-template-worker.ts):
- a file's exports onRequest, onRequestGet, ...Post, Put, Patch, Delete, Options, Head are its handlers (a
  handler may be an array of functions); `index` names its folder; `_middleware` runs for its folder and
  everything under it;
- `[name]` is one path segment (params.name, a string), `[[name]]` any number of them (params.name, an
  array of segments);
- routes are tried most specific first: more segments first, then literal before `[[...]]` before `[...]`
  segment by segment, then a method-specific export before onRequest, then by path;
- a request runs the middlewares of every route that matches a prefix of its path (least specific first),
  then the handlers of the first route that matches it whole; context.next() goes one step down that
  chain, and past its end, the static assets (which rtworker does not serve: a 404 that says so).
The router's code is rtworker's own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from rtproxy_tools.workerbase import WorkerError

SUFFIXES = (".mjs", ".js", ".ts", ".tsx", ".jsx")
HANDLER = re.compile(r"^onRequest(Get|Post|Put|Patch|Delete|Options|Head)?$")
PARAM = re.compile(r"^[A-Za-z0-9_]+$")

RUNTIME = r"""
function matchRoute(pattern, parts, whole) {
  const params = {};
  let i = 0;
  for (const seg of pattern) {
    if (seg.startsWith(":") && seg.endsWith("*")) {
      const rest = parts.slice(i).map(decodeURIComponent);
      if (rest.length) params[seg.slice(1, -1)] = rest;
      i = parts.length;
      continue;
    }
    if (i >= parts.length) return null;
    if (seg.startsWith(":")) params[seg.slice(1)] = decodeURIComponent(parts[i]);
    else if (seg !== parts[i]) return null;
    i++;
  }
  if (whole && i !== parts.length) return null;
  return { params, path: "/" + parts.slice(0, i).join("/") };
}

export default {
  async fetch(request, env, ctx) {
    const parts = new URL(request.url).pathname.split("/").filter(Boolean);
    const chain = [];
    for (const route of [...ROUTES].reverse()) {
      if (route.method && route.method !== request.method) continue;
      if (!route.middlewares.length) continue;
      const m = matchRoute(route.pattern, parts, false);
      if (m) for (const h of route.middlewares.flat()) chain.push({ h, ...m });
    }
    for (const route of ROUTES) {
      if (route.method && route.method !== request.method) continue;
      if (!route.handlers.length) continue;
      const m = matchRoute(route.pattern, parts, true);
      if (m) {
        for (const h of route.handlers.flat()) chain.push({ h, ...m });
        break;
      }
    }
    let data = {};
    let step = 0;
    let current = request;
    const next = async (input, init) => {
      if (input !== undefined) {
        current = new Request(typeof input === "string" ? new URL(input, current.url).toString() : input, init);
      }
      const here = chain[step++];
      if (!here) {
        return new Response(
          "rtworker: no Pages Function answers " + new URL(current.url).pathname + " and rtworker serves no static assets\n",
          { status: 404, headers: { "content-type": "text/plain; charset=utf-8" } },
        );
      }
      const context = {
        request: current,
        env,
        params: here.params,
        functionPath: here.path,
        next,
        waitUntil: (p) => ctx.waitUntil(p),
        passThroughOnException: () => ctx.passThroughOnException && ctx.passThroughOnException(),
        get data() { return data; },
        set data(value) {
          if (typeof value !== "object" || value === null) throw new Error("context.data must be an object");
          data = value;
        },
      };
      const response = await here.h(context);
      if (!(response instanceof Response)) throw new Error("a Pages Function must return a Response");
      return response;
    };
    return next();
  },
};
"""


def _segments(rel: str, where: Path) -> list[str]:
    out = []
    for seg in rel.split("/"):
        if not seg:
            continue
        if m := re.fullmatch(r"\[\[(.+)\]\]", seg):
            name, seg = m.group(1), f":{m.group(1)}*"
        elif m := re.fullmatch(r"\[(.+)\]", seg):
            name, seg = m.group(1), f":{m.group(1)}"
        else:
            name = ""
        if name and not PARAM.fullmatch(name):
            raise WorkerError(f"{where}: route parameter {name!r}: letters, digits and _ only", status=2)
        out.append(seg)
    return out


def _specificity(route: dict) -> tuple:
    """Sort key: more segments first; per segment literal < [param] < [[catchall]]; a method first."""
    segs = route["pattern"]
    rank = [2 if s.endswith("*") else 1 if s.startswith(":") else 0 for s in segs]
    return (-len(segs), rank, 0 if route["method"] else 1, "/" + "/".join(segs))


def routes(functions: Path, exports: dict[Path, list[str]]) -> list[dict]:
    """The route table: pattern (segments), method ("" for any), middlewares and handlers as
    (file, export name) pairs; most specific first."""
    table: dict[tuple[str, str], dict] = {}
    for file, names in sorted(exports.items()):
        rel = file.relative_to(functions).with_suffix("").as_posix()
        base = file.stem
        middleware = base in ("_middleware", "_middleware_")
        if base == "index" or middleware:
            rel = rel.rpartition("/")[0]
        pattern = _segments(rel, file)
        for name in names:
            m = HANDLER.match(name)
            if not m:
                continue
            method = (m.group(1) or "").upper()
            route = table.setdefault(
                ("/".join(pattern), method),
                {"pattern": pattern, "method": method, "middlewares": [], "handlers": []},
            )
            route["middlewares" if middleware else "handlers"].append((file, name))
    return sorted(table.values(), key=_specificity)


def render(table: list[dict]) -> str:
    """The entry module's text: imports of every function file, ROUTES, the router."""
    files = sorted({f for r in table for f, _ in r["middlewares"] + r["handlers"]})
    ids = {f: f"fn{i}" for i, f in enumerate(files)}
    lines = ["// Written by rtproxy's rtworker: the Pages Functions of one project, routed as Pages does."]
    lines += [f"import * as {ids[f]} from {json.dumps(str(f))};" for f in files]
    lines.append("const ROUTES = [")
    for r in table:
        mids = ", ".join(f"{ids[f]}.{n}" for f, n in r["middlewares"])
        hands = ", ".join(f"{ids[f]}.{n}" for f, n in r["handlers"])
        lines.append(
            f"  {{ pattern: {json.dumps(r['pattern'])}, method: {json.dumps(r['method'])}, "
            f"middlewares: [{mids}], handlers: [{hands}] }},"
        )
    lines.append("];")
    return "\n".join(lines) + "\n" + RUNTIME


async def write_entry(
    functions: Path, outdir: Path, run_esbuild: Callable[[list[str], Path], Awaitable[str]]
) -> Path:
    """Find the function files and their exports (esbuild's metafile, as generateConfigFromFileTree does),
    write the entry module into outdir; its path."""
    files = sorted(
        p
        for p in functions.rglob("*")
        if p.is_file()
        and p.suffix in SUFFIXES
        and not p.name.endswith(".d.ts")
        and "node_modules" not in p.parts
    )
    if not files:
        raise WorkerError(f"{functions}: no function files (.js .mjs .ts .tsx .jsx)", status=2)
    meta = outdir / "functions-meta.json"
    scan = outdir / "functions-scan"
    await run_esbuild(
        [*map(str, files), "--format=esm", f"--outdir={scan}", f"--metafile={meta}", "--log-level=error"],
        functions,
    )
    outputs = json.loads(meta.read_text("utf-8"))["outputs"]
    exports: dict[Path, list[str]] = {}
    for out in outputs.values():
        if "entryPoint" in out:
            exports[(functions / out["entryPoint"]).resolve()] = list(out.get("exports", []))
    table = routes(functions.resolve(), exports)
    if not any(r["handlers"] or r["middlewares"] for r in table):
        raise WorkerError(f"{functions}: no onRequest/onRequestGet/... export in any function file", status=2)
    entry = outdir / "pages-entry.mjs"
    entry.write_text(render(table), "utf-8")
    return entry
