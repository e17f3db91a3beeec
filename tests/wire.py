"""Frame builders for feeding a Session in unit tests (no sockets)."""

import json

from rtproxy_core import frames
from rtproxy_core.events import Frame

T0 = 1_800_000_000.0


def v2(join_ref, ref, topic, event, payload, *, client, t):
    data = json.dumps([join_ref, ref, topic, event, payload]).encode()
    return Frame(client, False, data, T0 + t)


def v1(topic, event, payload, ref, *, client, t, join_ref=None):
    obj = {"topic": topic, "event": event, "payload": payload, "ref": ref}
    if client:
        obj["join_ref"] = join_ref
    return Frame(client, False, json.dumps(obj).encode(), T0 + t)


def kind3(topic, event, value, *, join_ref="1", ref="2", t):
    return Frame(True, True, frames.encode_user_push(topic, event, value, join_ref=join_ref, ref=ref), T0 + t)


def kind4(topic, event, value, *, t):
    return Frame(False, True, frames.encode_user_broadcast(topic, event, value), T0 + t)
