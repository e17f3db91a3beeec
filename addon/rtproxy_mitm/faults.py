"""Fault injection (rt_fault): carries out what rtproxy_core.faults decides for each frame, and runs the
timers (close after N s, idle timeout). Works in every mode, on the flows the tracker tracks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mitmproxy import ctx, http
from rtproxy_core import frames
from rtproxy_core.events import Event, Frame, Hop, HopKind
from rtproxy_core.faults import FaultPlan, FaultSpec, help_text, parse_faults

from .connlog import flow_log
from .flowevents import UPSTREAM_URL, is_realtime
from .framenotes import DELAYED, DROPPED, INJECTED, LATE, FrameNotes, note
from .internals import close_with_code, drop_without_close
from .optionerror import reject, running

logger = logging.getLogger("rtproxy")


class Faults:
    def __init__(self, report: Callable[[str, Event], None], notes: FrameNotes | None = None) -> None:
        self.report = report
        self.notes = notes or FrameNotes()  # what the Realtime view says of the frames a fault touched
        self.spec = FaultSpec()
        self.plans: dict[str, FaultPlan] = {}
        self.flows: dict[str, http.HTTPFlow] = {}  # open Realtime WebSocket flows
        self.last_frame_at: dict[str, float] = {}
        self.tasks: dict[str, list[asyncio.Task]] = {}

    def load(self, loader) -> None:
        loader.add_option(
            name="rt_fault",
            typespec=str,
            default="",
            help="Comma-separated faults to inject into Realtime connections, combinable with any mode. "
            f"{help_text()}.",
        )

    def configure(self, updated: set[str]) -> None:
        if "rt_fault" in updated:
            try:
                spec = parse_faults(ctx.options.rt_fault)
            except ValueError as e:
                reject("rt_fault", str(e))
                return
            changed, self.spec = spec != self.spec, spec
            if running():
                if changed:
                    self._apply_to_live()
            elif spec.any:
                logger.info(f"rtproxy: injecting faults: {ctx.options.rt_fault}")

    def _apply_to_live(self) -> None:
        """rt_fault changed at runtime: new connections get the new faults; open ones get them too where
        a fault can act on a connection already open (per-frame faults from the next frame, the close
        and idle timers counted from now; strip-query only acts on an upgrade)."""
        now = ctx.options.rt_fault or "none"
        for flow_id, flow in self.flows.items():
            for task in self.tasks.pop(flow_id, []):
                task.cancel()
            if not self.spec.any:
                self.plans.pop(flow_id, None)
                continue
            plan = self.plans.get(flow_id)
            if plan is None:
                self.plans[flow_id] = self._plan(flow)
            else:
                plan.spec = self.spec
                self._start_timers(flow)
        live = f"; {len(self.flows)} open connection(s) too" if self.flows else ""
        logger.info(f"rtproxy: rt_fault is now {now}: new connections get it{live}")

    def _hop(self, flow: http.HTTPFlow, note: str, frame: Frame | None = None) -> None:
        self.report(flow.id, Hop(HopKind.FAULT, note, time.time(), frame))

    # -------------------------------------------------------------------------------- hooks

    def request(self, flow: http.HTTPFlow) -> None:
        if self.spec.strip_query and is_realtime(flow) and flow.response is None and "?" in flow.request.path:
            flow.request.path = flow.request.path.split("?", 1)[0]
            if UPSTREAM_URL in flow.metadata:
                flow.metadata[UPSTREAM_URL] = flow.request.url
            flow_log(flow.id).info("fault strip-query: the upgrade goes upstream without its query")

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        if not is_realtime(flow):
            return
        self.flows[flow.id] = flow  # open Realtime connections: a runtime rt_fault change reaches them
        if self.spec.any:
            self.plans[flow.id] = self._plan(flow)

    def _plan(self, flow: http.HTTPFlow) -> FaultPlan:
        vsn = frames.vsn_family(flow.request.query.get("vsn")) or frames.V1
        plan = FaultPlan(self.spec, vsn)
        self._start_timers(flow)
        return plan

    def _start_timers(self, flow: http.HTTPFlow) -> None:
        self.last_frame_at[flow.id] = time.monotonic()
        loop = asyncio.get_running_loop()
        tasks = self.tasks[flow.id] = []
        if self.spec.close:
            tasks.append(loop.create_task(self._close_later(flow, *self.spec.close)))
        if self.spec.idle_timeout_s is not None:
            tasks.append(loop.create_task(self._idle_watch(flow, self.spec.idle_timeout_s)))

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        plan = self.plans.get(flow.id)
        if plan is None:
            return
        try:
            self._message(flow, plan)
        except Exception as e:  # noqa: BLE001 (logged below, with its traceback)
            # Logged once per connection: no more faults on it, its frames go on untouched.
            self.plans.pop(flow.id, None)
            flow_log(flow.id).exception(
                "rtproxy internal error in rt_fault, no more faults on this "
                f"connection: {type(e).__name__}: {e}",
            )

    def _message(self, flow: http.HTTPFlow, plan: FaultPlan) -> None:
        assert flow.websocket is not None
        m = flow.websocket.messages[-1]
        self.last_frame_at[flow.id] = time.monotonic()
        if m.injected:
            return
        action = plan.on_frame(m.from_client, not m.is_text, m.content)
        if action.note:
            frame = Frame(m.from_client, not m.is_text, m.content, m.timestamp) if action.drop else None
            self._hop(flow, action.note, frame)
        if action.drop or action.delay_ms:
            m.drop()
            held = action.delay_ms and not action.drop
            note(
                flow, m, DELAYED if held else DROPPED, self._by(action.fault, action.delay_ms if held else 0)
            )
        if action.delay_ms and not action.drop:
            tasks = self.tasks.setdefault(flow.id, [])
            task = asyncio.get_running_loop().create_task(
                self._deliver_later(
                    flow, action.delay_ms, not m.from_client, m.content, m.is_text, action.fault
                )
            )
            tasks.append(task)
            # A delivered frame's task leaves the list: it holds the frames still held back, not every
            # frame the fault ever delayed.
            task.add_done_callback(lambda t: tasks.remove(t) if t in tasks else None)
        for text in action.inject_to_client:
            self.notes.injecting(flow, True, text.encode(), INJECTED, self._by(action.injected_by))
            ctx.master.commands.call("inject.websocket", flow, True, text.encode(), True)
        if action.close:
            close_with_code(flow, *action.close)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.flows.pop(flow.id, None)
        self.plans.pop(flow.id, None)
        self.last_frame_at.pop(flow.id, None)
        for task in self.tasks.pop(flow.id, []):
            task.cancel()

    # -------------------------------------------------------------------------------- timers

    @staticmethod
    def _by(fault: str, delay_ms: int = 0) -> str:
        """Who did it, for the Realtime view: "fault drop-join", "fault delay-replies, 3000 ms"."""
        return f"fault {fault or '?'}" + (f", {delay_ms} ms" if delay_ms else "")

    async def _deliver_later(
        self, flow: http.HTTPFlow, delay_ms: int, to_client: bool, content: bytes, is_text: bool, fault: str
    ) -> None:
        await asyncio.sleep(delay_ms / 1000)
        if flow.websocket is not None and flow.websocket.timestamp_end is None:
            self.notes.injecting(flow, to_client, content, LATE, self._by(fault, delay_ms))
            ctx.master.commands.call("inject.websocket", flow, to_client, content, is_text)

    async def _close_later(self, flow: http.HTTPFlow, code: int, after: float, reason: str) -> None:
        await asyncio.sleep(after)
        if flow.websocket is None or flow.websocket.timestamp_end is not None:
            return
        # Said first: mitmproxy runs tasks eagerly, so the close (websocket_end included) completes inside
        # close_with_code, after which the tracker no longer has the session.
        self._hop(flow, f"closed the connection with {code} {reason!r} after {after:g} s (close)")
        close_with_code(flow, code, reason)

    async def _idle_watch(self, flow: http.HTTPFlow, idle: float) -> None:
        while True:
            silent = time.monotonic() - self.last_frame_at.get(flow.id, time.monotonic())
            if silent >= idle:
                self._hop(
                    flow,
                    f"no frames for {idle:g} s: dropped the connection without a close frame (idle-timeout)",
                )
                drop_without_close(flow)
                return
            await asyncio.sleep(idle - silent)
