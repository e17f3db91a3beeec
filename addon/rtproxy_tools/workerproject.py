"""A Cloudflare Worker as its user has it, read for rtworker: a file (.js .mjs .cjs .ts .mts), a folder with a
wrangler config (wrangler.json, wrangler.jsonc, wrangler.toml: the order wrangler looks for them), or a Pages
project (a `functions/` folder). `load_project` reads it; `bundle` makes the one script workerd runs, with
esbuild (npm, the version wrangler pins) and the options wrangler deploys with.

Read from the config: main, compatibility_date, compatibility_flags, [vars], kv_namespaces,
pages_build_output_dir; `.dev.vars` beside it (dotenv) for secrets. Every other binding kind is named in
`unsupported`; so are [env.X] sections (out of scope: the top level is used).
"""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtproxy_tools import pagesrouter
from rtproxy_tools.workerbase import WorkerError, find_esbuild

CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
SOURCE_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx")
ENTRY_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts")
SKIP_DIRS = {"node_modules", ".wrangler", ".git", "dist", ".svelte-kit", ".next"}
FORMS = ("module", "service-worker", "pages")

# Binding kinds of a wrangler config rtworker does not serve; the key names a list of tables with a
# `binding` (or `name`) each, unless noted.
UNSUPPORTED_KINDS = (
    "d1_databases",
    "r2_buckets",
    "durable_objects",  # a table: bindings = [{name, class_name}]
    "services",
    "queues",  # a table: producers = [{binding, queue}] (consumers are not bindings)
    "ai",  # a table: {binding}
    "vectorize",
    "hyperdrive",
    "analytics_engine_datasets",
    "browser",  # a table: {binding}
    "assets",  # a table: {directory, binding}
    "dispatch_namespaces",
    "mtls_certificates",
    "send_email",
    "workflows",
    "images",  # a table: {binding}
    "version_metadata",  # a table: {binding}
    "secrets_store_secrets",
    "pipelines",
    "ratelimits",
    "unsafe",
    "wasm_modules",
    "text_blobs",
    "data_blobs",
)

_EXPORT_DEFAULT = re.compile(r"\bexport\s+default\b|\bexport\s*\{[^}]*\bas\s+default\b", re.DOTALL)
_ADD_FETCH_LISTENER = re.compile(r"""\baddEventListener\s*\(\s*["'`]fetch["'`]""")
_IMPORT = re.compile(
    r"""(?:^|[;\s])(?:import|export)\b[^;'"]*?from\s*["']([^"']+)["']"""
    r"""|\bimport\s*\(\s*["']([^"']+)|(?:^|[;\s])import\s*["']([^"']+)"""
)


@dataclass
class WorkerProject:
    """A Worker to run: `entry` is its main file (for Pages, the functions/ folder); `form` is "module",
    "service-worker" or "pages". `secrets` (from .dev.vars) are kept apart from `vars` and out of repr."""

    root: Path
    entry: Path
    form: str
    config_file: Path | None = None
    compat_date: str | None = None
    compat_flags: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    kv: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)

    @property
    def self_contained(self) -> bool:
        """One .js/.mjs module that imports nothing but the runtime's own (cloudflare:, node:): workerd can
        run it as written, without a bundle."""
        if self.form != "module" or self.entry.suffix not in (".js", ".mjs"):
            return False
        specs = ["".join(m) for m in _IMPORT.findall(self.entry.read_text("utf-8", "replace"))]
        return all(s.startswith(("cloudflare:", "node:")) for s in specs)


# ------------------------------------------------------------------------------------------ config files


def strip_jsonc(text: str) -> str:
    """JSON with comments (// and /* */) and trailing commas → JSON. Strings are kept as they are (a URL's
    `//` included); what is removed becomes spaces, newlines kept, so a parse error's line is the file's."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    joined = "".join(out)
    # a comma followed (past whitespace) by } or ] outside strings: the scan above left strings intact,
    # so look for commas again, skipping strings
    result: list[str] = []
    i, n = 0, len(joined)
    while i < n:
        c = joined[i]
        if c == '"':
            j = i + 1
            while j < n and joined[j] != '"':
                j += 2 if joined[j] == "\\" else 1
            result.append(joined[i : j + 1])
            i = j + 1
            continue
        if c == ",":
            j = i + 1
            while j < n and joined[j] in " \t\r\n":
                j += 1
            if j < n and joined[j] in "}]":
                result.append(" ")
                i += 1
                continue
        result.append(c)
        i += 1
    return "".join(result)


def read_config(path: Path) -> dict[str, Any]:
    """A wrangler config as a dict. Raises WorkerError (status 2) naming the file and the parse error."""
    text = path.read_text("utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(strip_jsonc(text) if path.suffix == ".jsonc" else text)
    except tomllib.TOMLDecodeError as e:
        raise WorkerError(f"{path}: not valid TOML: {e}", status=2) from None
    except json.JSONDecodeError as e:
        raise WorkerError(
            f"{path}:{e.lineno}: not valid JSON: {e.msg} (column {e.colno})", status=2
        ) from None
    if not isinstance(data, dict):
        raise WorkerError(f"{path}: expected a table/object at the top", status=2)
    return data


def read_dev_vars(path: Path) -> dict[str, str]:
    """A .dev.vars file (dotenv): KEY=VALUE lines, `export ` allowed, '#' comments, values in single quotes
    (as written), double quotes (\\n \\" \\\\ escapes) or bare (an inline ` #` starts a comment)."""
    out: dict[str, str] = {}
    for number, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise WorkerError(f"{path}:{number}: expected KEY=VALUE", status=2)
        value = value.strip()
        if value[:1] in ("'", '"') and value.find(value[0], 1) > 0:
            quote = value[0]
            body = value[1 : value.find(quote, 1)] if quote == "'" else _double_quoted(value)
            if quote == '"':
                body = body.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            value = body
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        out[key] = value
    return out


def _double_quoted(value: str) -> str:
    j = 1
    while j < len(value) and value[j] != '"':
        j += 2 if value[j] == "\\" else 1
    return value[1:j]


def find_config(folder: Path) -> Path | None:
    for name in CONFIG_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _binding_names(kind: str, value: Any) -> list[str]:
    if kind == "durable_objects" and isinstance(value, dict):
        value = value.get("bindings", [])
    elif kind == "queues" and isinstance(value, dict):
        value = value.get("producers", [])
    elif kind == "unsafe" and isinstance(value, dict):
        value = value.get("bindings", [])
    elif isinstance(value, dict) and kind in ("wasm_modules", "text_blobs", "data_blobs"):
        return [str(k) for k in value]
    if isinstance(value, dict):
        value = [value]
    names = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            name = item.get("binding") or item.get("name")
            if name:
                names.append(str(name))
    return names


def _unsupported(config: dict[str, Any]) -> list[str]:
    lines = []
    for kind in UNSUPPORTED_KINDS:
        if kind not in config:
            continue
        names = _binding_names(kind, config[kind])
        for name in names:
            lines.append(
                f"binding {name} ({kind}): rtworker cannot serve it, env.{name} is undefined in this run"
            )
        if not names and kind != "assets":
            lines.append(f"{kind}: rtworker cannot serve it")
    if isinstance(config.get("env"), dict) and config["env"]:
        envs = ", ".join(sorted(config["env"]))
        lines.append(f"[env.X] sections ({envs}): not read (out of scope); the top-level settings are used")
    return lines


# ------------------------------------------------------------------------------------------ load


def _sources(root: Path, entry: Path) -> list[Path]:
    """The user's own source files under root (node_modules, build output and dot-folders left out); for
    a file with no project around it, the file alone."""
    found: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        for p in sorted(folder.iterdir()):
            if p.is_dir():
                if p.name not in SKIP_DIRS and not p.name.startswith("."):
                    stack.append(p)
            elif p.suffix in SOURCE_SUFFIXES and not p.name.endswith(".d.ts"):
                found.append(p)
        if len(found) > 2000:
            break
    if entry.is_file() and entry not in found:
        found.insert(0, entry)
    return sorted(found)


def detect_form(entry: Path) -> str:
    """module (an `export default`), service-worker (addEventListener("fetch", ...) and no default export).
    Raises WorkerError (status 2) when it is neither."""
    text = entry.read_text("utf-8", "replace")
    if _EXPORT_DEFAULT.search(text):
        return "module"
    if _ADD_FETCH_LISTENER.search(text):
        return "service-worker"
    raise WorkerError(
        f"{entry}: no `export default {{ fetch }}` and no addEventListener('fetch', ...): not a Worker entry",
        status=2,
    )


def load_project(path: Path) -> WorkerProject:
    """Read the Worker at `path` (a file or a folder). Raises WorkerError (status 2) with a one-line reason."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WorkerError(f"{path}: no such file or folder", status=2)
    path = path.resolve()
    if path.is_file():
        if path.suffix not in ENTRY_SUFFIXES:
            raise WorkerError(f"{path}: a Worker file is .js, .mjs, .cjs, .ts or .mts", status=2)
        config_file = next((c for d in path.parents if (c := find_config(d))), None)
        root = config_file.parent if config_file else path.parent
        config = read_config(config_file) if config_file else {}
        return _project(root, path, detect_form(path), config_file, config)
    config_file = find_config(path)
    config = read_config(config_file) if config_file else {}
    if path.name == "functions" and not config_file and not (path / "functions").is_dir():
        path = path.parent  # the functions/ folder itself: its project is the folder above
    if "pages_build_output_dir" in config or (not config_file and (path / "functions").is_dir()):
        functions = path / "functions"
        if not functions.is_dir():
            raise WorkerError(
                f"{path}: a Pages project without a functions/ folder: nothing to run", status=2
            )
        return _project(path, functions, "pages", config_file, config)
    if not config_file:
        raise WorkerError(
            f"{path}: no wrangler.json, wrangler.jsonc or wrangler.toml, and no functions/ folder", status=2
        )
    main = config.get("main")
    if not isinstance(main, str) or not main:
        raise WorkerError(f"{config_file}: no `main` (the Worker's entry file)", status=2)
    entry = (path / main).resolve()
    if not entry.is_file():
        raise WorkerError(f"{config_file}: main = {main!r}: no such file ({entry})", status=2)
    return _project(path, entry, detect_form(entry), config_file, config)


def _project(
    root: Path, entry: Path, form: str, config_file: Path | None, config: dict[str, Any]
) -> WorkerProject:
    where = config_file or root
    date = config.get("compatibility_date")
    if date is not None and (not isinstance(date, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)):
        raise WorkerError(f"{where}: compatibility_date {date!r}: expected YYYY-MM-DD", status=2)
    flags = config.get("compatibility_flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise WorkerError(f"{where}: compatibility_flags: expected a list of strings", status=2)
    raw_vars = config.get("vars", {})
    if not isinstance(raw_vars, dict):
        raise WorkerError(f"{where}: vars: expected a table", status=2)
    kv = []
    for item in config.get("kv_namespaces", []) or []:
        if not isinstance(item, dict) or not isinstance(item.get("binding"), str):
            raise WorkerError(f"{where}: kv_namespaces: each needs a `binding` name", status=2)
        kv.append(item["binding"])
    dev_vars = root / ".dev.vars"
    secrets = read_dev_vars(dev_vars) if dev_vars.is_file() else {}
    return WorkerProject(
        root=root,
        entry=entry,
        form=form,
        config_file=config_file,
        compat_date=date,
        compat_flags=list(flags),
        vars=dict(raw_vars),
        secrets=secrets,
        kv=kv,
        unsupported=_unsupported(config),
        sources=_sources(root, entry) if config_file or form == "pages" else [entry],
    )


# ------------------------------------------------------------------------------------------ bundle


def esbuild_args(project: WorkerProject, fmt: str) -> list[str]:
    """The options wrangler bundles with for a deploy: workers-sdk packages/wrangler/src/deployment-bundle/
    bundle.ts, bundleWorker() (and COMMON_ESBUILD_OPTIONS there): format "esm" for modules, "iife" for a
    service worker; target es2024; supported import-source; loader jsx for .js .mjs .cjs; sourcemap;
    conditions workerd, worker, browser (getBuildConditions); platform left to esbuild's default (browser:
    mainFields browser, module, main); keepNames (config keep_names ?? true, BundlerController.ts);
    define process.env.NODE_ENV (and global./globalThis.) = "production" (targetConsumer deploy), and
    navigator.userAgent = "Cloudflare-Workers" when isNavigatorDefined() (navigator-user-agent.ts: flag
    global_navigator, or a date from 2022-03-21); external __STATIC_CONTENT_MANIFEST, `cloudflare:*`
    (esbuild-plugins/cloudflare-internal.ts) and `node:*` (esbuild-plugins/nodejs-compat.ts marks node:
    imports it cannot resolve external; the v2 hybrid mode's unenv polyfills are not reproduced)."""
    date = project.compat_date or ""
    flags = project.compat_flags
    navigator = "global_navigator" in flags or ("no_global_navigator" not in flags and date >= "2022-03-21")
    args = [
        "--bundle",
        f"--format={fmt}",
        "--target=es2024",
        "--supported:import-source=true",
        "--loader:.js=jsx",
        "--loader:.mjs=jsx",
        "--loader:.cjs=jsx",
        "--sourcemap",
        "--conditions=workerd,worker,browser",
        "--keep-names",
        "--external:__STATIC_CONTENT_MANIFEST",
        "--external:cloudflare:*",
        "--external:node:*",
        "--log-level=error",
        "--color=false",
    ]
    for name in ("process.env.NODE_ENV", "global.process.env.NODE_ENV", "globalThis.process.env.NODE_ENV"):
        args.append(f'--define:{name}="production"')
    if navigator:
        args.append('--define:navigator.userAgent="Cloudflare-Workers"')
    return args


def _first_error(stderr: str) -> str:
    """esbuild's first error as one line: `file:line:col: text`."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*(?:✘ )?\[ERROR\] (.*)", line)
        if m:
            text = m.group(1).strip()
            for after in lines[i + 1 : i + 4]:
                loc = re.match(r"\s+(\S+:\d+:\d+):", after)
                if loc:
                    return f"{loc.group(1)}: {text}"
            return text
    return next((line.strip() for line in lines if line.strip()), "esbuild failed")


async def run_esbuild(args: list[str], cwd: Path) -> str:
    """Run esbuild; its stdout. Raises WorkerError with esbuild's first error."""
    proc = await asyncio.create_subprocess_exec(
        str(find_esbuild()),
        *args,
        cwd=str(cwd),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise WorkerError(f"esbuild: {_first_error(err.decode('utf-8', 'replace'))}", status=2)
    return out.decode("utf-8", "replace")


async def bundle(project: WorkerProject, outdir: Path) -> Path:
    """Bundle the project's Worker into outdir; the script's path (worker.mjs for a module or Pages
    project, worker.js, an IIFE, for a service worker). Raises WorkerError."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    entry = project.entry
    if project.form == "pages":
        entry = await pagesrouter.write_entry(project.entry, outdir, run_esbuild)
    fmt = "iife" if project.form == "service-worker" else "esm"
    out = outdir / ("worker.js" if fmt == "iife" else "worker.mjs")
    meta = outdir / "meta.json"
    await run_esbuild(
        [str(entry), *esbuild_args(project, fmt), f"--outfile={out}", f"--metafile={meta}"], project.root
    )
    project.sources = bundled_sources(project.root, meta)
    return out


def bundled_sources(root: Path, meta: Path) -> list[Path]:
    """The user's files esbuild put in the bundle (its metafile's inputs, relative to the working
    directory, root), without node_modules and without what rtworker generated: what a reading of the
    Worker's source should read, and nothing else in the folder (a fixtures/ folder beside src/)."""
    try:
        inputs = json.loads(meta.read_text())["inputs"]
    except (OSError, ValueError, KeyError):
        return []
    out: list[Path] = []
    for name in inputs:
        path = (root / name).resolve()
        if path.is_relative_to(root.resolve()) and "node_modules" not in path.parts and path.is_file():
            out.append(path)
    return out
