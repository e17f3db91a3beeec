"""Every use of mitmproxy internals in rtproxy, in one module: what mitmproxy has no public API for.

A mitmproxy upgrade that breaks one of these breaks this file; each function says what it relies on,
and the tests that notice. Checked against mitmproxy 12.3.1.

- `close_with_code`, `drop_without_close`: ending a live WebSocket the way a hop does, with a chosen
  close code or without any close frame (mitmproxy#4773; `flow.kill()` does not stop a live WebSocket).
  They use the proxyserver addon's `inject_event` and `connections`. tests/test_e2e_faults.py,
  tests/test_closecodes.py.
- `deferred_values`, `parse_value`: the `--set rt_x=value` values mitmproxy deferred until the script
  declared rt_x (`OptManager.deferred`, `_options`, `_parse_setval`). tests/test_options.py.
- `undeclared`: the `--set` values and config.yaml keys no addon declared, which mitmproxy keeps in
  `OptManager.deferred` without a word (`_UnconvertedStrings` for a `--set` value). tests/test_options.py.
- `show_option_error`: mitmweb's Options editor shows a refused value only as a red border (its UI keeps
  the PUT /options error to itself); the text goes under the field through the `options/update` message
  mitmweb sends its UI (`app.ClientConnection.broadcast`, `optmanager.dump_dicts`), whose `error` its
  Options editor shows. tests/test_options.py (test_mitmwebs_ui_shows_an_options_error), and
  tests/browser/test_mitmweb_options.py in Chromium.
- `remove_view`: taking a content view out of the registry (`contentviews.registry._by_name`).
  tests/test_contentview.py.
- `wrap_har_entries`: adding fields to the entries `savehar` writes (`SaveHar.flow_entry`, which leaves
  a flow's comment and marker out). tests/test_commands.py (`save.har`), tests/test_rtdiagnose.py
  (test_a_relay_mode_har_names_the_clients_url_its_close_and_its_comment: `hardump`).
- `close_client`: closing a client connection that has sent no request yet (rt_header_timeout; no flow
  to kill): the proxyserver addon's `connections` and the handler's `close_connection`.
  tests/test_header_timeout.py.
- `cap_request_heads`: a byte cap on an unfinished HTTP/1 request head (rt_header_bytes), which
  mitmproxy buffers without bound (`Http1Server.read_headers`); installed only on `READ_HEADERS_CHECKED`
  versions. tests/test_header_timeout.py.
- `pass_lost_connections`: a WebSocket whose TCP connection is lost on one side loses it on the other
  too, as a Worker or nginx passes it on (mitmproxy closes the other side with a close frame 1000:
  `WebsocketLayer.relay_messages` turns `events.ConnectionClosed` into wsproto's CloseConnection(1006)
  and sends it, and wsproto's `FrameProtocol.close` replaces the local-only 1006 by 1000); installed
  only on `RELAY_MESSAGES_CHECKED` versions. tests/test_parity.py (test_parity_closes).
- `FastAddonManager`: mitmproxy's AddonManager with each hook's handlers looked up once, not on every
  event (`AddonManager.trigger_event` walks every addon, its children, a `getattr` and a `safecall`
  context manager per addon per event: about half the CPU of a WebSocket message). Used by the `rtproxy`
  command (rtproxy_tools/launcher.py), not by mitmdump. tests/test_launcher.py.
- `store_message_copy`: the flow keeping another copy of a WebSocket message than the one mitmproxy
  forwards (`WebsocketLayer.relay_messages` sends its local `message`), on the versions this was read in
  (`RELAY_MESSAGES_CHECKED`, `relay_messages_checked`: both this and `pass_lost_connections` follow
  relay_messages). tests/test_sanitize.py.
- `insert_before`: an addon put in mitmproxy's chain before the first of the named ones, not at its end
  (`AddonManager.chain`, the list hooks run in; `register` without `add` gives it its name and load), so
  a sanitized copy of a response is on the flow when `save`, `savehar`, `dumper` and `view` read it in the
  same hook. tests/test_no_credentials.py.
- `hide_from_view`: taking a flow out of mitmweb's (and mitmproxy console's) flow list without killing it
  (`View.remove`, the `view.flows.remove` command, kills a live flow first, which would abort the answer
  it is sending): the View's `_store`, `_view` and its `sig_view_remove`/`sig_store_remove` signals.
  tests/test_page_probe.py (test_the_probes_reports_stay_out_of_the_flow_list).
- `web_login_url`: mitmweb's login URL with its token, as mitmweb prints it (`WebMaster.web_url`), so the
  log's redaction can let that one URL through. tests/test_quiet.py (test_mitmweb_login_url_is_shown).
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import Callable, Iterator

import wsproto.events
from mitmproxy import addonmanager, connection, ctx, exceptions, hooks, http, optmanager, websocket
from mitmproxy.contentviews import Contentview
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.websocket import WebsocketEndHook, WebsocketLayer, WebSocketMessageInjected
from rtproxy_core import closecodes
from wsproto.frame_protocol import Opcode

from . import _major_minor


class _ServerCloseInjected(WebSocketMessageInjected, events.DataReceived):
    """Routed like an injected WebSocket message; the WebSocket layer then parses `data` as raw bytes from
    the server: a close frame. mitmproxy forwards that close to the client, answers the server, and ends
    the flow with close_code=code, closed_by_client=False."""

    def __init__(self, flow: http.HTTPFlow, code: int, reason: str) -> None:
        payload = code.to_bytes(2, "big") + closecodes.clip_reason(reason)
        self.flow = flow
        self.message = websocket.WebSocketMessage(Opcode.BINARY, False, b"")
        self.connection = connection.Server(address=None)  # neither the client nor the real server
        self.data = bytes([0x88, len(payload)]) + payload  # FIN + CLOSE, unmasked, as a server sends it


def close_with_code(flow: http.HTTPFlow, code: int, reason: str = "") -> bool:
    """Close both sides with `code` as if the upstream had sent it. False if the flow is not live.
    Raises ValueError for a code that is not `closecodes.sendable`: mitmproxy would parse the injected
    frame, refuse it, and close both sides with 1002 instead."""
    if why := closecodes.unsendable(code):
        raise ValueError(why)
    try:
        ctx.master.addons.get("proxyserver").inject_event(_ServerCloseInjected(flow, code, reason))
    except ValueError:
        return False
    return True


def drop_without_close(flow: http.HTTPFlow) -> bool:
    """End the client's TCP connection with no close frame (what an idle timeout in nginx or Cloudflare
    does): the client sees 1006. mitmproxy then closes the upstream side itself. False if not live."""
    server = ctx.master.addons.get("proxyserver")
    handler = server.connections.get(flow.client_conn.id) if server else None
    if handler is None:
        return False
    flow.metadata["rtproxy.dropped_by_hop"] = True  # flowevents.DROPPED_BY_HOP: not the client leaving
    handler.close_connection(flow.client_conn)
    return True


def close_client(client: connection.Client) -> bool:
    """Close a client connection as mitmproxy closes one itself, before it sent any request (no flow to
    kill yet). False when the proxy no longer holds it (it is ending already). mitmproxy then runs its usual
    end: the client sees its TCP connection closed (FIN), `client_disconnected` follows.

    Relies on mitmproxy 12.3.1 addons/proxyserver.py (`Proxyserver.connections`, the live
    `ConnectionHandler`s by `client.id`, filled by proxy/mode_servers.py `ServerInstance.handle_stream`'s
    `register_connection`) and proxy/server.py (`ConnectionHandler.transports[client].handler`, the task
    reading the client, and `ConnectionHandler.close_connection`, which cancels it as `on_timeout` does for
    tcp_timeout; `handle_connection` then closes the writer). tests/test_header_timeout.py (every test
    awaits the closed sockets; test_close_client_relies_on checks the names)."""
    server = ctx.master.addons.get("proxyserver")
    handler = server.connections.get(client.id) if server else None
    io = handler.transports.get(client) if handler is not None else None
    if handler is None or io is None or io.handler is None or io.handler.done():
        return False
    handler.close_connection(client)
    return True


def pass_lost_connections(applies: Callable[[http.HTTPFlow], bool]) -> Callable[[], None]:
    """From now on, when one side of a live WebSocket flow for which `applies(flow)` holds loses its TCP
    connection (no close frame), close the other side's TCP connection without a close frame too, instead
    of mitmproxy's close frame 1000 (which tells a client the server closed cleanly: the real path's client
    sees 1006). The flow ends as mitmproxy ends it (close_code 1006, closed_by_client, websocket_end).
    Returns the undo.

    Follows mitmproxy 12.0.0-12.3.1 proxy/layers/websocket.py, `WebsocketLayer.relay_messages` (its
    `events.ConnectionClosed` branch, then its `CloseConnection` branch without the `send2`)."""
    original = WebsocketLayer.relay_messages

    def relay_messages(self: WebsocketLayer, event: events.Event) -> Iterator[commands.Command]:
        # Not a generator itself: every other event gets mitmproxy's own generator, with no layer between.
        if isinstance(event, events.ConnectionClosed) and self.flow.websocket and applies(self.flow):
            return lost(self, event)
        return original(self, event)

    def lost(self: WebsocketLayer, event: events.ConnectionClosed) -> Iterator[commands.Command]:
        from_client = event.connection == self.context.client
        src_ws = self.client_ws if from_client else self.server_ws
        src_ws.receive_data(None)
        data = self.flow.websocket
        assert data is not None  # relay_messages passes on only flows with one
        for ws_event in src_ws.events():  # wsproto: CloseConnection(1006), the one event of a lost connection
            if isinstance(ws_event, wsproto.events.CloseConnection):
                data.timestamp_end = time.time()
                data.closed_by_client = from_client
                data.close_code = ws_event.code
                data.close_reason = ws_event.reason
        for ws in (self.server_ws, self.client_ws):
            yield commands.CloseConnection(ws.conn)
        yield WebsocketEndHook(self.flow)
        self.flow.live = False
        self._handle_event = self.done

    WebsocketLayer.relay_messages = relay_messages  # type: ignore[method-assign]

    def undo() -> None:
        WebsocketLayer.relay_messages = original  # type: ignore[method-assign]

    return undo


def insert_before(addon: object, names: tuple[str, ...]) -> bool:
    """Register `addon` and put it in the chain just before the first addon named in `names` (an addon's
    `name`, else its class name in lower case, as addonmanager.py `_get_name` does). False, and nothing
    done, when the chain holds none of them."""
    mgr = ctx.master.addons
    found = [getattr(a, "name", None) or type(a).__name__.lower() for a in mgr.chain]
    at = next((i for i, n in enumerate(found) if n in names), None)
    if at is None:
        return False
    mgr.register(addon)  # its load (none) and its name; then its place, not the end
    mgr.chain.insert(at, addon)
    return True


def web_login_url() -> str | None:
    """The URL mitmweb prints for its UI, login token included (mitmproxy 12.3.1 tools/web/master.py
    `WebMaster.web_url`, which is webaddons.py `WebAuth.web_url`: `http://HOST:PORT/?token=TOKEN`, no
    token when web_password is set); None outside mitmweb."""
    url = getattr(getattr(ctx, "master", None), "web_url", None)
    return url if isinstance(url, str) else None


def deferred_values(options: optmanager.OptManager) -> list[tuple[str, optmanager._Option, list[str]]]:
    """(name, option, raw values) of each deferred `--set rt_*` whose option is declared now."""
    out = []
    for name, value in list(options.deferred.items()):
        if name.startswith("rt_") and name in options._options and hasattr(value, "val"):
            out.append((name, options._options[name], value.val))
    return out


def parse_value(options, option, raw: list[str]) -> None:
    """Parse a deferred value as mitmproxy's script loader would; raises OptionsError."""
    options._parse_setval(option, raw)


def drop_deferred(options, name: str) -> None:
    del options.deferred[name]


def undeclared(options: optmanager.OptManager) -> list[tuple[str, bool]]:
    """(name, given with --set) of each deferred option no addon has declared (yet). mitmproxy keeps a
    `--set` value (an `optmanager._UnconvertedStrings`) or a config.yaml key of an option it does not know
    in `OptManager.deferred`, for an addon that may declare it later, and says nothing when none does."""
    return [
        (name, hasattr(value, "val")) for name, value in list(options.deferred.items()) if name not in options
    ]


def show_option_error(option: str, message: str) -> bool:
    """In mitmweb, write `message` under `option`'s field in the Options editor; False elsewhere.

    mitmweb 12's Options editor (web/src/js/components/Modal/OptionModal.tsx) marks a value its PUT
    /options refused with a red border only, and shows the text of `options_meta[option].error`, which the
    server never sets: `WebMaster._sig_options_update` sends `optmanager.dump_dicts` (type, default,
    value, help, choices) as an `options/update` message, and the UI replaces the option's entry with it.
    So after the refusal's own rollback update (sent from inside `configure`), the same entry with an
    `error` goes out, through `app.ClientConnection.broadcast`; the next accepted value's update clears
    it. mitmweb's modules are imported only where mitmweb runs."""
    app = sys.modules.get("mitmproxy.tools.web.app")
    web_master = sys.modules.get("mitmproxy.tools.web.master")
    master = getattr(ctx, "master", None)
    if app is None or web_master is None or not isinstance(master, web_master.WebMaster):
        return False

    def send() -> None:
        if option in master.options:
            entry = optmanager.dump_dicts(master.options, [option])
            entry[option]["error"] = message
            app.ClientConnection.broadcast(type="options/update", payload=entry)

    master.event_loop.call_soon(send)  # after the rollback's update, which the refusal sends first
    return True


def hide_from_view(flow: http.HTTPFlow) -> bool:
    """Take `flow` out of mitmproxy's View (mitmweb's and console's flow list, addons/view.py) as
    `View.remove` does, without its `f.kill()`: the flow goes on (its answer is sent), unlisted. True if
    it was listed; False without a View (mitmdump, the rtproxy command) or on a View of another shape."""
    view = ctx.master.addons.get("view")
    store, listed = getattr(view, "_store", None), getattr(view, "_view", None)
    if view is None or not isinstance(store, dict) or listed is None or flow.id not in store:
        return False
    if flow in listed:
        index = listed.index(flow)
        listed.remove(flow)
        view.sig_view_remove.send(flow=flow, index=index)
    del store[flow.id]
    view.sig_store_remove.send(flow=flow)
    return True


def remove_view(view: Contentview) -> bool:
    """Remove this very `view` from mitmproxy's content-view registry; True if it was there.

    mitmproxy 12 has no public way: `contentviews.remove` is a deprecated no-op and the registry is a
    read-only Mapping over its private `_by_name` dict. Only this instance is removed (after a hot reload
    the name may already belong to a newer one), and `on_change` is sent so mitmproxy console drops its
    rendering cache, as it does when a view is added."""
    from mitmproxy import contentviews

    registry = contentviews.registry
    by_name = getattr(registry, "_by_name", None)
    key = view.name.lower()
    if not isinstance(by_name, dict) or by_name.get(key) is not view:
        return False
    removed: Contentview = by_name.pop(key)
    registry.on_change.send(removed)
    return True


def wrap_har_entries(extend: Callable[[http.HTTPFlow, dict], dict]) -> Callable[[], None]:
    """Make mitmproxy's savehar pass each entry it builds through `extend(flow, entry)`; returns the undo.

    savehar has no hook for this: its `SaveHar.flow_entry(self, flow, servers_seen)` (addons/savehar.py)
    builds one entry per flow, for the `save.har` command and the `hardump` option alike. `hardump` is
    written in savehar's `done`, which runs after a script's (savehar comes after the script loader in
    mitmdump's and mitmweb's addons): so the wrapper is not undone at rtproxy's `done`, and a second call
    (a script reload) replaces the first's `extend` instead of stacking on it."""
    from mitmproxy.addons.savehar import SaveHar

    original = getattr(SaveHar.flow_entry, "__wrapped__", SaveHar.flow_entry)

    def flow_entry(self, flow, servers_seen):
        return extend(flow, original(self, flow, servers_seen))

    flow_entry.__wrapped__ = original  # type: ignore[attr-defined]
    SaveHar.flow_entry = flow_entry  # type: ignore[method-assign]

    def undo() -> None:
        if SaveHar.flow_entry is flow_entry:
            SaveHar.flow_entry = original  # type: ignore[method-assign]

    return undo


# The mitmproxy versions (major, minor; both ends included) whose Http1Server.read_headers was read (below).
READ_HEADERS_CHECKED = ((12, 3), (12, 3))


def read_headers_checked(version: str) -> bool:
    """Is `version` one of READ_HEADERS_CHECKED?"""
    found = _major_minor(version)
    first, last = READ_HEADERS_CHECKED
    return found is not None and first <= found <= last


def cap_request_heads(
    limit: Callable[[], int],
    refused: Callable[[connection.Connection, int], None],
    closed_by_us: Callable[[connection.Connection], bool],
) -> Callable[[], None]:
    """From now on, an HTTP/1 client whose request head (request line and headers, no blank line yet) holds
    more than `limit()` bytes (0: no cap) is answered 431 and closed, and `refused(client, size)` is
    called; and a client that `closed_by_us` (close_client) ends without mitmproxy's line "Client closed
    connection before completing request headers: <all it sent>" (it did not close it, and the head can
    be as long as the cap). Returns the undo.

    mitmproxy 12.3.1 buffers a request head without bound: proxy/layers/http/_http1.py
    `Http1Connection._handle_event` appends every DataReceived to `self.buf`, and `Http1Server.read_headers`
    leaves an unfinished head there (`pass  # FIXME: protect against header size DoS`). The wrapper runs
    read_headers as it is, then, where it left the connection still reading headers, answers as its own
    ValueError branch does (`make_error_response`, `CloseConnection`, `state = done`: no flow, no log line of
    the buffer when the connection ends). Installed only on READ_HEADERS_CHECKED versions.
    tests/test_header_timeout.py (test_an_endless_request_head_is_refused_at_the_cap)."""
    from mitmproxy.proxy.layers.http import _http1

    original = _http1.Http1Server.read_headers

    def read_headers(self, event: events.ConnectionEvent) -> Iterator[commands.Command]:
        if isinstance(event, events.ConnectionClosed) and closed_by_us(self.conn):
            yield commands.CloseConnection(
                self.conn
            )  # read_headers' ConnectionClosed branch, without its Log
            return
        yield from original(self, event)
        cap = limit()
        if not (cap and isinstance(event, events.DataReceived) and self.state == self.read_headers):
            return
        if (size := len(self.buf)) > cap:
            yield commands.SendData(
                self.conn, _http1.make_error_response(431, f"Request header fields larger than {cap} bytes")
            )
            yield commands.CloseConnection(self.conn)
            self.state = self.done
            refused(self.conn, size)

    _http1.Http1Server.read_headers = read_headers  # type: ignore[method-assign,assignment]

    def undo() -> None:
        if _http1.Http1Server.read_headers is read_headers:
            _http1.Http1Server.read_headers = original  # type: ignore[method-assign]

    return undo


# The mitmproxy versions (major, minor; both ends included) whose WebsocketLayer.relay_messages was read and
# forwards its local `message` (below): 12.0.0 to 12.3.1. On any other one the Sanitize addon does not call
# store_message_copy: if that version forwarded `flow.websocket.messages[-1]` instead, the sanitized copy
# would go on the wire (a join's access_token without its signature: every join refused).
RELAY_MESSAGES_CHECKED = ((12, 0), (12, 3))


def relay_messages_checked(version: str) -> bool:
    """Is `version` (mitmproxy.version.VERSION) one of RELAY_MESSAGES_CHECKED? A version that does not
    read as major.minor is not."""
    found = _major_minor(version)
    first, last = RELAY_MESSAGES_CHECKED
    return found is not None and first <= found <= last


def store_message_copy(flow: http.HTTPFlow, message: websocket.WebSocketMessage, content: bytes) -> bool:
    """In `websocket_message`: the flow stores `content` in place of `message`'s, while mitmproxy forwards
    `message` unchanged. False if `message` is no longer the flow's newest (nothing is replaced).

    mitmproxy 12.0.0 to 12.3.1 (proxy/layers/websocket.py, `WebsocketLayer.relay_messages`; the same code in
    both) creates the message, stores it and runs the hook, then forwards the local variable's content:

        message = websocket.WebSocketMessage(typ, from_client, content, injected=injected)
        self.flow.websocket.messages.append(message)
        yield WebsocketMessageHook(self.flow)
        if not message.dropped:
            for msg in fragmentizer(message.content):
                yield dst_ws.send2(msg)

    So the copy is what mitmweb shows, `-w` (addons/save.py, `Save.websocket_end`) and `savehar` write, and
    the addons after rtproxy's see; a change an addon after it makes to the newest message (its content,
    drop()) is made to the copy and does not reach the wire."""
    ws = flow.websocket
    if ws is None or not ws.messages or ws.messages[-1] is not message:
        return False
    ws.messages[-1] = websocket.WebSocketMessage(
        message.type, message.from_client, content, message.timestamp, message.dropped, message.injected
    )
    return True


_addon_logger = logging.getLogger(addonmanager.__name__)


def log_addon_error() -> None:
    """The exception being handled, logged as mitmproxy's `safecall` logs an addon's (addonmanager.py):
    "Addon error: ...", with its traceback, on mitmproxy's addonmanager logger."""
    value = sys.exc_info()[1]
    _addon_logger.error(f"Addon error: {value}", exc_info=value)


class FastAddonManager(addonmanager.AddonManager):
    """trigger_event as mitmproxy 12.0.0-12.3.1's (addonmanager.py `AddonManager.trigger_event`,
    `invoke_addon`, `_iter_hooks`, `safecall`): for each top-level addon in chain order, its and its
    children's handler for the hook, awaited when it returns an awaitable; an exception ends that top-level
    addon's handlers, is logged as "Addon error: ..." and the next one runs; AddonHalt ends the event;
    OptionsError propagates. What changes: the handlers of a hook are found once and kept until the addons
    change (`register`, `remove`, `clear`, or an `invoke_addon_sync`, which a script (re)load calls), and
    the hook's arguments are built once per event, not once per handler."""

    def __init__(self, master) -> None:
        super().__init__(master)
        self._handlers: dict[str, tuple[tuple[Callable, ...], ...]] = {}

    def _changed(self) -> None:
        self._handlers.clear()

    def register(self, addon):
        try:
            return super().register(addon)
        finally:
            self._changed()

    def remove(self, addon) -> None:
        try:
            super().remove(addon)
        finally:
            self._changed()

    def clear(self) -> None:
        self._changed()
        super().clear()

    def invoke_addon_sync(self, addon, event: hooks.Hook) -> None:
        # A script's load, configure and running come this way (addons/script.py); so does every log
        # record (log.LegacyLogEvents, add_log), which changes no addon.
        if event.name != "add_log":
            self._changed()
        super().invoke_addon_sync(addon, event)

    def _lookup(self, event: hooks.Hook) -> tuple[tuple[Callable, ...], ...]:
        found = self._handlers.get(event.name)
        if found is None:
            groups = (self._group(top, event) for top in self.chain)
            found = self._handlers[event.name] = tuple(g for g in groups if g)
        return found

    def _group(self, top, event: hooks.Hook) -> tuple[Callable, ...]:
        """A top-level addon's handlers. A hook attribute that is not callable makes _iter_hooks raise
        AddonManagerError where it stands: the handlers before it run, then the error is raised (and
        logged) on every event, as mitmproxy raises it inside its safecall."""
        funcs: list[Callable] = []
        try:
            for _, func in self._iter_hooks(top, event):
                funcs.append(func)
        except exceptions.AddonManagerError as e:
            error = e

            def raise_it(*args, _e=error):
                raise _e

            funcs.append(raise_it)
        return tuple(funcs)

    async def trigger_event(self, event: hooks.Hook) -> None:
        groups = self._lookup(event)
        if not groups:
            return
        args = event.args()
        for funcs in groups:
            try:
                for func in funcs:
                    res = func(*args)
                    if res is not None and inspect.isawaitable(res):
                        await res
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception:  # noqa: BLE001 (logged, as safecall logs it)
                log_addon_error()
