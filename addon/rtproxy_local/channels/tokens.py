"""Tokens: a joined channel re-checks its token until its exp (confirm_token/1), and takes new ones from
access_token pushes."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from rtproxy_core.catalog import say

from .. import jwt
from ..state import Member
from .postgres import PostgresChanges
from .reasons import DATABASE, POLICIES, shutdown_text


class Tokens(PostgresChanges):
    """A channel's token: checked at join, re-checked until its exp, replaced by access_token pushes (which
    subscribe postgres_changes again)."""

    def _verify(self, token: str) -> dict[str, Any]:
        cfg = self.cfg
        if not cfg.accept_any_apikey:
            return jwt.verify(token, cfg.jwt_secret)
        try:  # any key accepted: only an expired JWT still counts, since clients handle that case
            return jwt.verify(token, cfg.jwt_secret, check_signature=False)
        except jwt.JWTError as e:
            if e.kind == jwt.EXPIRED:
                raise
            return {}

    def _arm_token_check(self, m: Member, claims: dict[str, Any]) -> None:
        """confirm_token/1: re-check the token after min(@confirm_token_ms_interval, exp - now)."""
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool):
            m.set_timer("confirm_token", None)
            return
        exp_diff = exp - int(time.time())
        delay = max(min(self.cfg.confirm_token_interval_s, exp_diff), 0.001)
        m.set_timer("confirm_token", asyncio.get_running_loop().call_later(delay, self._token_check, m))

    def _token_check(self, m: Member) -> None:
        """handle_info(:confirm_token)."""
        m.timers.pop("confirm_token", None)
        if m.conn.joins.get(m.topic) is not m:
            return
        try:
            claims = self._verify(m.access_token)
        except jwt.JWTError as e:
            if e.kind == jwt.MALFORMED:  # {:error, :token_malformed, msg} matches no clause there
                self._crash(m, "CaseClauseError in handle_info(:confirm_token)")
            else:
                self._shutdown(m, shutdown_text(e))
            return
        if self._exp_passed(m, claims):
            return
        self._arm_token_check(m, claims)

    def _exp_passed(self, m: Member, claims: dict[str, Any]) -> bool:
        """confirm_token/1's `exp_diff when exp_diff > 0` failing (a whole-second race with the claim
        validator): {:error, exp_diff}, which the channel is told as inspect/1 of the number."""
        exp = claims.get("exp")
        if isinstance(exp, int) and not isinstance(exp, bool) and exp - int(time.time()) <= 0:
            self._shutdown(m, str(exp - int(time.time())))
            return True
        return False

    def _access_token(self, m: Member, payload: Any) -> None:
        """handle_in("access_token", ...)."""
        if not isinstance(payload, dict) or "access_token" not in payload:
            self.rate(m.conn.tenant, "events").add()  # the catch-all handle_in/3
            return
        token = payload["access_token"]
        if token is None or token == m.access_token or isinstance(token, str) and token.startswith("sb_"):
            return  # ignored, no reply
        if not isinstance(token, str):
            self.rate(m.conn.tenant, "events").add()
            return
        m.access_token = token
        try:
            claims = self._verify(token)
        except jwt.JWTError as e:
            self._shutdown(m, shutdown_text(e))
            return
        cfg = self.cfg
        if cfg.database in DATABASE:
            self._shutdown(m, DATABASE[cfg.database][1])
            return
        if m.private:
            if cfg.policies in POLICIES:
                text = POLICIES[cfg.policies][1]
                self._shutdown(m, say(text, topic=m.sub) if text.startswith("system.") else text)
                return
            if m.sub in cfg.denied_topics:
                self._shutdown(m, say("system.unauthorized", topic=m.sub))
                return
        if self._exp_passed(m, claims):
            return
        self._arm_token_check(m, claims)
        if m.pg_params:  # the subscription is made again with the new claims, after a short backoff
            low, high = cfg.postgres_resubscribe_s
            loop = asyncio.get_running_loop()
            m.set_timer("postgres", loop.call_later(random.uniform(low, high), self._postgres_subscribe, m))
