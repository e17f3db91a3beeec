"""Live tracking and diagnosis: mitmproxy hooks -> core events -> one Session per Realtime connection
-> log lines and findings. The only place that turns live flows into events; all Realtime knowledge is
in rtproxy_core.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

from mitmproxy import command, ctx, exceptions, http, types
from rtproxy_core.clip import clip
from rtproxy_core.diagnosis import Diagnoser
from rtproxy_core.events import Event, Hop, PageEvent, conn_id
from rtproxy_core.page import PAGE_WIDE, Pages
from rtproxy_core.redact import Redactor
from rtproxy_core.report import channel_table, channel_table_text, report_json, report_markdown
from rtproxy_core.rules import FROM_PAGE, SEEN_BY_PAGE, Confidence, Finding, Severity, Timers
from rtproxy_core.session import KEEP_FINISHED, Note, NoteLevel, Session

from . import connlog
from .connlog import connection_log
from .flowevents import closed_event, error_events, frame_event, handshake_event, is_realtime, request_events
from .marks import show_findings
from .optionerror import reject

logger = logging.getLogger("rtproxy")
LEVELS = {NoteLevel.DEBUG: logging.DEBUG, NoteLevel.INFO: logging.INFO, NoteLevel.WARNING: logging.WARNING}
TICK_S = 1.0  # how often time-based rules (join-timeout) look at live sessions
# Characters of a finding's evidence in its log line: a rule's evidence is a few sentences with the sender's
# fields clipped; with the longest explains and fix (binding-mismatch, 582) and the prefix, the line stays
# under clip.LINE_MAX (rt.report keeps the evidence whole).
EVIDENCE_MAX = 600


def report_base(path: str) -> Path:
    """PATH without a .md or .json suffix: the report is written to base.md and base.json."""
    base = Path(path).expanduser()
    return base.with_suffix("") if base.suffix in (".md", ".json") else base


def unwritable(path: str) -> str | None:
    """Why a report could not be written to PATH, checked before the run (None: it can be)."""
    if not path.strip():
        return "no path given (the report goes to PATH.md and PATH.json)"
    base = report_base(path)
    if base.is_dir() or not base.name:
        return f"{path} is a folder: name a file in it (the report goes to FILE.md and FILE.json)"
    folder = base.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist (the report is written on exit to {base}.md and .json)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    for target in (base.with_suffix(".md"), base.with_suffix(".json")):
        if target.is_dir():
            return f"{target} is a folder"
    return None


class Tracker:
    def __init__(self) -> None:
        self.live: dict[str, Session] = {}
        self.flows: dict[str, http.HTTPFlow] = {}  # the live sessions' flows, by the same flow id
        # The last KEEP_FINISHED finished sessions by flow id, oldest first (with their flows, for hop
        # events the relay reports after a flow ended).
        self.ended: dict[str, tuple[Session, http.HTTPFlow | None]] = {}
        self.redactor = Redactor()
        self.diagnoser = Diagnoser()
        self.debug = False
        self.counts: Counter[str] = Counter()  # findings by code, whole run
        self.connections = 0
        self._tick: asyncio.Task | None = None
        # Addons that add to rt.channels and the report (rtproxy_mitm/legs.py): each has
        # channel_lines(session) -> list[str], report_json() -> dict, report_markdown() -> str.
        self.extensions: list = []
        self.pages = Pages()  # page sockets (rt_page_probe) and the wire connections they are
        self.page_pending: dict[tuple[str, int], list[PageEvent]] = {}  # a page socket not paired yet

    def load(self, loader) -> None:
        loader.add_option(
            name="rt_show_secrets",
            typespec=bool,
            default=False,
            help="Print apikey, JWT and access_token values in rtproxy's output, and keep them in the flows "
            "mitmproxy stores. Off by default: they are redacted and JWTs are shown as their role and expiry "
            "only; what mitmproxy stores and shows of Realtime flows (URL, headers, refusal bodies, "
            "Set-Cookie, messages, close reasons) and of the app's calls to its Supabase project (auth, "
            "rest, storage, functions) holds sanitized credentials (a JWT without its signature), the wire "
            "the real ones.",
        )
        loader.add_option(
            name="rt_timers",
            typespec=str,
            default="",
            help="Realtime's timers as the diagnosis rules expect them, in seconds: join (client join "
            "timeout), heartbeat (client heartbeat interval), idle (server idle close); any subset. "
            f"Unset: the defaults, {Timers().in_force()} (a client's heartbeats show its own cadence). "
            "Shorten them when your clients or server use shorter ones.",
        )
        loader.add_option(
            name="rt_report",
            typespec=str,
            default="",
            help="On exit, write the findings and channel table to this path as Markdown (.md) and JSON "
            "(.json), as the rt.report command does.",
        )
        loader.add_option(
            name="rt_log_rate",
            typespec=str,
            default=str(connlog.DEFAULT_RATE),
            help="At most LINES log lines per Realtime connection every SECONDS (LINES/SECONDSs); the lines "
            "over it are counted, and one line says how many ('… 460 more lines suppressed for this "
            "connection in the last 10 s') when the interval is over or the connection ends. Findings, "
            "errors and the connection's own lines (its upgrade, its close) are always written. off: no "
            "cap (every per-frame line of termlog_verbosity=debug).",
        )

    def configure(self, updated: set[str]) -> None:
        if "rt_timers" in updated:
            try:
                self.diagnoser.timers = Timers.parse(ctx.options.rt_timers)
            except ValueError as e:
                reject("rt_timers", str(e))
        if "rt_report" in updated and ctx.options.rt_report:
            problem = unwritable(ctx.options.rt_report)
            if problem:
                reject("rt_report", problem)
        if "rt_log_rate" in updated:
            try:
                connlog.set_rate(connlog.parse_rate(ctx.options.rt_log_rate))
            except ValueError as e:
                reject("rt_log_rate", str(e))
        if "rt_show_secrets" in updated:
            self.redactor.show_secrets = ctx.options.rt_show_secrets
        if "termlog_verbosity" in updated:
            # Per-frame lines cost a json.dumps each; build them only when someone will see them.
            self.debug = ctx.options.termlog_verbosity == "debug"
            for s in self.live.values():
                s.debug = self.debug

    def running(self) -> None:
        self._tick = asyncio.get_running_loop().create_task(self._ticker())

    def done(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        # Connections still open when mitmproxy stops end with the run, as they end a capture offline:
        # their final check runs, so the summary and the report say what rtdiagnose would.
        for flow_id in list(self.live):
            session, flow = self.live.pop(flow_id), self.flows.pop(flow_id, None)
            self._guarded(session, lambda s=session, f=flow: self._findings(s, self.diagnoser.end(s), f))
            self._keep(flow_id, session, flow)
            connlog.end(session.conn)
        if self.connections:
            found = ", ".join(f"{code} ×{n}" for code, n in self.counts.most_common()) or "none"
            logger.info(f"rtproxy: {self.connections} Realtime connection(s); findings: {found}")
        if ctx.options.rt_report:
            try:
                md, js = self.write_report(ctx.options.rt_report)
            except OSError as e:  # the directory went away during the run: say so, lose nothing else
                logger.error(f"rt_report: cannot write {ctx.options.rt_report}: {e.strerror or e}")
            else:
                logger.info(f"rtproxy: report written to {md} and {js}")

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.time()
            connlog.roll_over()  # the counts of lines suppressed in an interval that is over
            for flow_id, session in list(self.live.items()):
                flow = self.flows.get(flow_id)
                self._guarded(
                    session, lambda s=session, t=now, f=flow: self._findings(s, self.diagnoser.tick(s, t), f)
                )

    def _guarded(self, session: Session, work, *args) -> None:
        """Run work for a session; a bug in rtproxy must never disturb the traffic. The first internal
        error of a connection is logged and its tracking stops; the flow itself goes on untouched."""
        if session.broken:
            return
        try:
            work(*args)
        except Exception as e:  # noqa: BLE001 (logged by _broke, with its traceback)
            self._broke(session, e)

    def _broke(self, session: Session, e: Exception) -> None:
        session.broken = True  # on the session: it ends with it, and no other connection inherits it
        connection_log(session.conn).exception(
            f"rtproxy internal error, no longer tracking this connection: {type(e).__name__}: {e}",
        )

    # -------------------------------------------------------------------------------- events in

    def report_event(self, flow_id: str, event: Event) -> None:
        """Events from the relay (and faults) about a flow."""
        session = self.live.get(flow_id)
        if session is not None:
            self._feed(session, event, self.flows.get(flow_id))
        elif isinstance(event, Hop) and (ended := self.ended.get(flow_id)) is not None:
            # What the relay did after the client's leg ended (its close() threw, leaving the upstream leg
            # open): logged and diagnosed on the ended connection, not lost.
            self._guarded(ended[0], self._feed_late, *ended, event)

    def _feed_late(self, session: Session, flow: http.HTTPFlow | None, *events: Event) -> None:
        """Events after the connection's end, fed together and diagnosed once (a page's report: the
        findings see all of it, its close with its `offline`)."""
        for event in events:
            for note in session.feed(event):
                self._log(session, note)
        self._findings(session, self.diagnoser.check(session, events[-1].time, final=True), flow)

    def _feed(self, session: Session, event: Event, flow: http.HTTPFlow | None) -> None:
        # _guarded's work written out: every frame comes here, one call from the hook to the diagnoser.
        if session.broken:
            return
        try:
            notes, findings = self.diagnoser.feed(session, event)
            for note in notes:
                self._log(session, note)
            if findings:
                self._findings(session, findings, flow)
        except Exception as e:  # noqa: BLE001 (logged by _broke, with its traceback)
            self._broke(session, e)

    def _log(self, session: Session, note: Note) -> None:
        connection_log(session.conn).log(
            LEVELS[note.level], self.redactor.output(note.text), capped=not note.always
        )

    def _findings(self, session: Session, findings: list[Finding], flow: http.HTTPFlow | None) -> None:
        if findings and flow is not None:
            show_findings(flow, session)
        for f in findings:
            self.log_finding(session.conn, f)

    def log_finding(self, conn: str, f: Finding) -> None:
        """One finding's log line (and the run's count of its code), never suppressed by rt_log_rate; its
        topic and evidence clipped (clip.clip) so the fix fits in the line."""
        self.counts[f.code] += 1
        out = self.redactor.output
        where = f" {clip(out(f.topic))}" if f.topic else ""
        level = logging.INFO if f.severity == Severity.INFO else logging.WARNING
        sure = "" if f.confidence == Confidence.CERTAIN else f" [{f.confidence}]"
        evidence = clip(out(f.evidence), EVIDENCE_MAX)
        page = f" ({SEEN_BY_PAGE})" if f.code in FROM_PAGE else ""  # as the flow's comment says it
        connection_log(conn).finding(
            level,
            f.code,
            out(f"finding {f.code}{where} ({f.explains}){sure}{page}: {evidence}. Fix: {f.fix}"),
            out(f"finding {f.code}{where}{sure}{page}: {evidence}"),
        )

    def _finish(self, flow: http.HTTPFlow) -> None:
        session = self.live.pop(flow.id, None)
        self.flows.pop(flow.id, None)
        if session is not None:
            self._guarded(session, lambda: self._findings(session, self.diagnoser.end(session), flow))
            self._keep(flow.id, session, flow)
            connlog.end(session.conn)

    def _keep(self, flow_id: str, session: Session, flow: http.HTTPFlow | None) -> None:
        self.ended[flow_id] = (session, flow)
        while len(self.ended) > KEEP_FINISHED:
            self.ended.pop(next(iter(self.ended)))

    @property
    def finished(self) -> list[Session]:
        """The finished sessions kept, oldest first."""
        return [session for session, _ in self.ended.values()]

    # -------------------------------------------------------------------------------- the page's probe

    def _session_of(self, flow_id: str) -> tuple[Session, http.HTTPFlow | None, bool] | None:
        if (session := self.live.get(flow_id)) is not None:
            return session, self.flows.get(flow_id), True
        if (ended := self.ended.get(flow_id)) is not None:
            return ended[0], ended[1], False
        return None

    def _feed_page(self, flow_id: str, events: list[PageEvent]) -> None:
        found = self._session_of(flow_id)
        if found is None:
            return
        session, flow, live = found
        if not live:  # the page's report came after the wire's end: diagnosed on the ended connection
            if events:
                self._guarded(session, self._feed_late, session, flow, *events)
            return
        for ev in events:
            self._feed(session, ev, flow)

    def page_report(self, page: str, events: list[PageEvent]) -> None:
        """One report of the page's probe (rtproxy_mitm/page.py): each page socket paired with its wire
        connection (rtproxy_core.page.Pages) and its events fed to that connection's Session; the page's
        own events (hidden, offline) to every connection of the page."""
        candidates = [
            (flow_id, s.url, s.opened_at)
            for flow_id, s in [*((k, v[0]) for k, v in self.ended.items()), *self.live.items()]
        ]
        # Each connection's events of this report, in order, fed together once the report is read (an
        # ended connection is diagnosed once on all of them: its close with the `offline` before it).
        batches: dict[str, list[PageEvent]] = {}

        def to(flow_id: str, evs: list[PageEvent]) -> None:
            batches.setdefault(flow_id, []).extend(evs)

        for key in list(self.page_pending):  # a socket reported before its upgrade reached the tracker
            first = self.page_pending[key][0]
            if (flow_id := self.pages.pair(key[0], first, candidates)) is not None:
                to(flow_id, self.pages.page_wide.get(key[0], []) + self.page_pending.pop(key))
        for ev in events:
            if ev.what in PAGE_WIDE:
                self.pages.keep(page, ev)
                for flow_id in self.pages.conns_of(page):
                    to(flow_id, [ev])
            elif ev.sid is None:
                continue
            elif ev.what == "socket":
                flow_id = self.pages.pair(page, ev, candidates)
                if flow_id is None:
                    self.page_pending[(page, ev.sid)] = [ev]
                    while len(self.page_pending) > 100:
                        self.page_pending.pop(next(iter(self.page_pending)))
                else:
                    to(flow_id, [*self.pages.page_wide.get(page, []), ev])
            elif (flow_id := self.pages.sockets.get((page, ev.sid))) is not None:
                to(flow_id, [ev])
            elif (pending := self.page_pending.get((page, ev.sid))) is not None:
                pending.append(ev)
                del pending[1:-1000]
        for flow_id, evs in batches.items():
            self._feed_page(flow_id, evs)

    # -------------------------------------------------------------------------------- hooks

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.id in self.live or not is_realtime(flow):
            return
        session = Session(
            conn=conn_id(flow.id),
            redactor=self.redactor,
            debug=self.debug,
            join_timeout_s=self.diagnoser.timers.join,
        )
        self.live[flow.id] = session
        self.flows[flow.id] = flow
        self.connections += 1
        for event in request_events(flow):
            self._feed(session, event, flow)

    def response(self, flow: http.HTTPFlow) -> None:
        session = self.live.get(flow.id)
        if session is None or flow.response is None:
            return
        self._feed(session, handshake_event(flow.response), flow)
        if flow.websocket is None:
            self._finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        session = self.live.get(flow.id)
        if session is None:
            return
        for event in error_events(flow):
            self._feed(session, event, flow)
        self._finish(flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        session = self.live.get(flow.id)
        if session is not None:
            assert flow.websocket is not None
            m = flow.websocket.messages[-1]
            if not m.dropped:  # a frame a fault dropped never reached the other side (faults report it)
                self._feed(session, frame_event(m), flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        session = self.live.get(flow.id)
        if session is not None:
            assert flow.websocket is not None
            self._feed(session, closed_event(flow), flow)
            self._finish(flow)

    # -------------------------------------------------------------------------------- commands

    def sessions(self) -> list[Session]:
        return self.finished + list(self.live.values())

    @command.command("rt.report")
    def report(self, path: types.Path) -> None:
        """Write rtproxy's findings and channel table to PATH.md and PATH.json (a .md or .json suffix on
        PATH is replaced)."""
        if problem := unwritable(str(path)):
            raise exceptions.CommandError(f"rt.report: {problem}")
        try:
            md, js = self.write_report(str(path))
        except OSError as e:
            raise exceptions.CommandError(f"rt.report: cannot write {path}: {e.strerror or e}") from None
        logger.info(f"rtproxy: report written to {md} and {js}")

    def write_report(self, path: str) -> tuple[Path, Path]:
        base = report_base(path)
        sessions = self.sessions()
        js, md = report_json(sessions), report_markdown(sessions)
        for ext in self.extensions:
            js.update(ext.report_json())
            md += ext.report_markdown()
        markdown = self.redactor.output(md)
        data = json.dumps(self.redactor.output(js), indent=2, ensure_ascii=False)
        base.with_suffix(".md").write_text(markdown)
        base.with_suffix(".json").write_text(data)
        return base.with_suffix(".md"), base.with_suffix(".json")

    def channel_data(self) -> dict:
        """rt.channels' JSON: report.channel_table over the sessions, and the extensions' lines per connection
        (`legs`, with rt_legs), redacted."""
        sessions = self.sessions()
        data = channel_table(sessions, time.time())
        legs = {s.conn: lines for s in sessions for ext in self.extensions if (lines := ext.channel_lines(s))}
        if legs:
            data["legs"] = legs
        return self.redactor.output(data)

    def channel_lines(self, data: dict | None = None) -> list[str]:
        """rt.channels' table: one row per channel (report.channel_table_text), then the extensions' lines."""
        data = self.channel_data() if data is None else data
        if not data["connections"]:
            return []
        lines = channel_table_text(data)
        if data.get("legs"):
            lines.append("hop legs:")
            lines += [f"{conn}  {line}" for conn, more in data["legs"].items() for line in more]
        return lines

    @command.command("rt.channels")
    def channels(self, form: str = "table") -> str:
        """Each Realtime connection's channels, one row each: connection id, socket, topic, state, join
        latency, the client's last outcome, the top finding (the one the flow's comment names). `table`
        writes the table to the event log (mitmweb: Options > Display Event Log) and answers how many rows;
        `json` answers the table as JSON."""
        if form == "json":
            return json.dumps(self.channel_data(), ensure_ascii=False)
        if form != "table":
            raise exceptions.CommandError(f"rt.channels: {form!r} is no form: table (the default) or json")
        data = self.channel_data()
        lines = self.channel_lines(data)
        if not lines:
            logger.info("rt.channels: no Realtime connections yet")
            return "no Realtime connections yet"
        for line in lines:
            logger.info(line)
        rows = sum(max(1, len(c["channels"])) for c in data["connections"])
        return f"rt.channels: {rows} row(s) on {len(data['connections'])} connection(s), in the event log"
