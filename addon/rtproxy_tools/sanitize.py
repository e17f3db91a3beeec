"""Replace the credentials in a capture so it can be attached to a bug report.

    rtsanitize IN OUT

IN is a HAR file (any producer's: Chrome/Edge DevTools, HTTP Toolkit, mitmproxy's savehar, Firefox, …; a
byte order mark and UTF-16 are kept), mitmproxy's compressed .zhar, or a mitmproxy flow file (mitmdump -w).
OUT is written in the same form. A JWT keeps its header and claims (role, exp: what a diagnosis reads) and
loses its signature; an sb_publishable_/sb_secret_ key keeps its prefix only; any other key, token,
password, cookie value or URL password becomes `rtproxy-sanitized`. Replaced: URL queries (an OAuth
callback's `code` too), headers (Authorization, apikey, x-api-key, Cookie, Set-Cookie, Location, Referer),
HAR cookies, WebSocket messages (access_token in a Realtime message, a payload's password, any JWT or sb_
key), request and response bodies (a login's password, GoTrue's provider_token, the PKCE code_verifier,
form bodies field by field), and any JWT or sb_ key anywhere else. rtdiagnose gives the
same answers on OUT as on IN. Prints what it replaced (counts by kind, never a value). Exit status: 0
written, 2 IN could not be read or OUT not written (one line on stderr says why).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import codecs
import json
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtproxy_core import sanitize
from rtproxy_core.captures import CaptureError
from rtproxy_core.redact import Redactor
from rtproxy_core.sanitize import Places

from rtproxy_tools import version_text

from .captures import MAX_INFLATED, check_har, format_of

# ---------------------------------------------------------------------------------------------- HAR


def _pairs(items: Any, places: Places, where: str, fix: Callable[[str, str], tuple[str, Any]]) -> None:
    """[{name, value}] (HAR's headers, cookies, queryString, params) or [name, value] pairs (Slack's
    headers, which mitmproxy's HAR import takes too), values replaced in place."""
    if not isinstance(items, list):
        return
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            item["value"], found = fix(str(item.get("name", "")), item["value"])
            sanitize.add(places, where, found)
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
            item[1], found = fix(item[0], item[1])
            sanitize.add(places, where, found)


def _cookie(name: str, value: str) -> tuple[str, Any]:
    return sanitize.cookie_value(value)


def _content(content: Any, places: Places, url: str, request: bool) -> None:
    """A response's `content` ({mimeType, text, encoding?}) or a request's `postData` ({mimeType, text,
    params?}); `url` the request's (a request body's `code` may be an authorization code:
    sanitize.request_codes)."""
    if not isinstance(content, dict):
        return
    body, mime = content.get("text"), content.get("mimeType")
    mime = mime if isinstance(mime, str) else ""
    raw: bytes | None = None
    if isinstance(body, str) and body and content.get("encoding") == "base64":
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    params = content.get("params")
    codes = False
    if request:
        # What the body says, and the fields `params` names (HAR's form fields: a form however it is typed).
        said = raw.decode("latin-1") if raw is not None else body if isinstance(body, str) else ""
        fields = params if isinstance(params, list) else []
        names = [p["name"] for p in fields if isinstance(p, dict) and isinstance(p.get("name"), str)]
        codes = sanitize.request_codes(url, said, mime) or sanitize.request_codes(
            url, "&".join(f"{n}=" for n in names), sanitize.FORM
        )
    if raw is not None:
        new, found = sanitize.body_bytes(raw, mime=mime, codes=codes)
        if found:
            content["text"] = base64.b64encode(new).decode("ascii")
            sanitize.add(places, sanitize.BODIES, found)
    elif isinstance(body, str) and body:
        content["text"], found = sanitize.body(body, mime=mime, codes=codes)
        sanitize.add(places, sanitize.BODIES, found)
    _pairs(
        params,
        places,
        sanitize.BODIES,
        lambda name, value: sanitize.form_value(name, value, codes=codes),
    )


def _messages(messages: Any, places: Places) -> None:
    """Chrome's `_webSocketMessages` (also mitmproxy's and HTTP Toolkit's): opcode 2 data is base64."""
    if not isinstance(messages, list):
        return
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("data"), str):
            continue
        kind, data = m.get("type"), m["data"]
        if kind not in ("send", "receive"):  # Chrome's error entries: the browser's text
            m["data"], found = sanitize.text(data)
        elif m.get("opcode") == 2:
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                m["data"], found = sanitize.text(data)
            else:
                new, found = sanitize.message(raw, binary=True, from_client=kind == "send")
                if found:
                    m["data"] = base64.b64encode(new).decode("ascii")
        else:
            raw = data.encode("utf-8", "surrogatepass")  # as rtproxy_core.captures reads it
            new, found = sanitize.message(raw, binary=False, from_client=kind == "send")
            if found:
                m["data"] = new.decode("utf-8", "surrogatepass")
        sanitize.add(places, sanitize.MESSAGES, found)


def _side(msg: Any, places: Places, content_key: str, url: str) -> None:
    if not isinstance(msg, dict):
        return
    for key in ("url", "redirectURL"):
        if isinstance(msg.get(key), str):
            msg[key], found = sanitize.url(msg[key])
            sanitize.add(places, sanitize.URLS, found)
    _pairs(msg.get("queryString"), places, sanitize.URLS, sanitize.query_value)
    _pairs(msg.get("headers"), places, sanitize.HEADERS, sanitize.header)
    _pairs(msg.get("cookies"), places, sanitize.COOKIES, _cookie)
    _content(msg.get(content_key), places, url, request=content_key == "postData")


def sanitize_har(doc: Any) -> Places:
    """A parsed HAR document, in place: what was replaced, by place. The places HAR names (url,
    queryString, headers, cookies, postData, content, _webSocketMessages) are sanitized as what they are;
    every other string (pages, _initiator's URLs, _error, comments) as free text."""
    if not isinstance(doc, dict) or not isinstance(doc.get("log"), dict):
        raise CaptureError("not a HAR file (no 'log' object)")
    places: Places = {}
    entries = doc["log"].get("entries")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            request = entry.get("request")
            url = request.get("url") if isinstance(request, dict) else None
            url = url if isinstance(url, str) else ""
            _side(request, places, "postData", url)
            _side(entry.get("response"), places, "content", url)
            _messages(entry.get("_webSocketMessages"), places)
    # What is left (and what was just done, which a second pass leaves as it is: sanitizing is idempotent).
    doc["log"] = sanitize.walk(doc["log"], places)
    return places


def _codec(raw: bytes) -> tuple[str, bytes, str, str]:
    """(decode with, byte order mark to write, encode with, what to call it) for JSON text in any encoding
    JSON allows (json.detect_encoding: RFC 8259 §8.1, and the BOMs Fiddler and Windows tools write)."""
    enc = json.detect_encoding(raw)
    boms = {
        codecs.BOM_UTF32_LE: "utf-32-le",
        codecs.BOM_UTF32_BE: "utf-32-be",
        codecs.BOM_UTF16_LE: "utf-16-le",
        codecs.BOM_UTF16_BE: "utf-16-be",
    }
    if enc == "utf-8-sig":
        return enc, codecs.BOM_UTF8, "utf-8", "UTF-8 with a byte order mark"
    if enc in ("utf-16", "utf-32"):
        bom = next(b for b in sorted(boms, key=len, reverse=True) if raw.startswith(b))
        write = boms[bom]
        return enc, bom, write, f"{write.upper()[:6]} {write[-2:].upper()} with a byte order mark"
    return enc, b"", enc, enc.upper().replace("-LE", " LE").replace("-BE", " BE")


def _layout(text: str) -> tuple[str | int | None, tuple[str, str]]:
    """json.dumps' indent and separators that write `text` back the way it was laid out: Chrome's and
    HTTP Toolkit's JSON.stringify(har, null, 2), mitmproxy's json.dumps(har, indent=4), or one line."""
    body = text.lstrip("\ufeff")
    _, newline, rest = body.partition("\n")
    if not newline:
        return None, ((",", ":") if '":"' in body[:2000] or '":{' in body[:2000] else (", ", ": "))
    second = rest.split("\n", 1)[0]
    lead = second[: len(second) - len(second.lstrip(" \t"))]
    return ("\t" if lead.startswith("\t") else len(lead) or None), (",", ": ")


def _har_bytes(raw: bytes) -> tuple[bytes, Places, str]:
    decode, bom, encode, called = _codec(raw)
    try:
        text = raw.decode(decode)
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CaptureError(f"not valid JSON (a HAR file is JSON): {e}") from None
    check_har(doc)
    places = sanitize_har(doc)
    indent, separators = _layout(text)
    ascii_only = text.isascii()
    try:
        out = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=ascii_only)
        data = out.encode(encode)
    except UnicodeEncodeError:  # a lone surrogate (a \\uD800 escape in the original): escaped again
        out = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=True)
        data = out.encode(encode)
    if text.endswith("\n"):
        data += "\n".encode(encode)
    return bom + data, places, f"HAR in {called}, like the input"


def _har(raw: bytes, path: Path) -> tuple[bytes, Places, str]:
    return _har_bytes(raw)


def _zhar(raw: bytes, path: Path) -> tuple[bytes, Places, str]:
    """mitmproxy's .zhar: `SaveHar.export_har` writes zlib.compress(har, 9) (mitmproxy/addons/savehar.py);
    written back the same way."""
    inflate = zlib.decompressobj()
    try:
        har = inflate.decompress(raw, MAX_INFLATED)
    except zlib.error as e:
        raise CaptureError(f"not a compressed HAR (.zhar, zlib): {e}") from None
    if inflate.unconsumed_tail or not inflate.eof:
        raise CaptureError("compressed HAR (.zhar) is truncated or inflates past the limit")
    try:
        data, places, called = _har_bytes(har)
    except CaptureError as e:
        raise CaptureError(f"compressed HAR (.zhar): {e}") from None
    return zlib.compress(data, 9), places, f"mitmproxy's compressed HAR (.zhar) holding a {called}"


def _flows(raw: bytes, path: Path) -> tuple[bytes, Places, str]:
    """A mitmproxy flow file, read and written by mitmproxy's own io (a file from an older mitmproxy is
    read through its migrations and written in this one's format)."""
    import io as bytesio

    from mitmproxy import exceptions, io
    from mitmproxy.version import VERSION
    from rtproxy_mitm.sanitize import sanitize_flow

    places: Places = {}
    out = bytesio.BytesIO()
    writer = io.FlowWriter(out)
    n = 0
    try:
        for f in io.FlowReader(bytesio.BytesIO(raw)).stream():
            for where, counts in sanitize_flow(f).items():
                sanitize.add(places, where, counts)
            writer.add(f)
            n += 1
    except exceptions.FlowReadException as e:
        raise CaptureError(f"not a mitmproxy flow file: {e}") from None
    if n == 0:
        raise CaptureError("not a mitmproxy flow file: no flow in it")
    return out.getvalue(), places, f"mitmproxy flow file, {n} flow(s), in mitmproxy {VERSION}'s format"


# One sanitizer per format rtproxy_tools.captures reads (its FORMATS, by name): a new format there needs
# one here (tests/test_sanitize.py checks).
SANITIZERS: dict[str, Callable[[bytes, Path], tuple[bytes, Places, str]]] = {
    "HAR": _har,
    "mitmproxy compressed HAR (.zhar)": _zhar,
    "mitmproxy flow file": _flows,
}


def sanitize_file(src: Path) -> tuple[bytes, Places, str]:
    """(what to write, what was replaced by place, what the file is); CaptureError (one line) when it
    cannot be read."""
    try:
        raw = Path(src).read_bytes()
    except OSError as e:
        raise CaptureError(f"cannot read: {e.strerror or e}") from None
    return SANITIZERS[format_of(raw).name](raw, Path(src))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", action="version", version=version_text("rtsanitize"))
    ap.add_argument("input", type=Path, metavar="IN", help="HAR, .zhar or mitmproxy flow file")
    ap.add_argument("output", type=Path, metavar="OUT", help="where to write the sanitized copy (not IN)")
    args = ap.parse_args(argv)
    redactor = Redactor()  # everything printed passes redactor.output last
    src, dst = args.input, args.output

    def fail(why: str) -> int:
        print(redactor.output(f"rtsanitize: {why}"), file=sys.stderr)
        return 2

    if _same_file(src, dst):
        return fail(f"{dst}: refusing to overwrite the input; name another file")
    try:
        data, places, called = sanitize_file(src)
    except CaptureError as e:
        return fail(f"{src}: {e}")
    tmp = dst.with_name(f".{dst.name}.rtsanitize-tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dst)  # OUT is whole or not there: never half a capture
    except OSError as e:
        tmp.unlink(missing_ok=True)
        return fail(f"{dst}: cannot write: {e.strerror or e}")
    replaced = sanitize.total(places)
    lines = [f"rtsanitize: wrote {dst} ({called})"]
    if replaced:
        lines.append(f"replaced {sum(replaced.values())}: {sanitize.describe(replaced)}")
        lines += [f"  {line}" for line in sanitize.summary(places)]
    else:
        lines.append("replaced nothing: no credential found")
    print(redactor.output("\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
