"""Per-endpoint circuit breaker whose state every delivery worker shares through Redis.

A receiver that keeps failing is probed once per interval instead of being hammered; the
decisions are Lua scripts so concurrent workers agree on who probes.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from fila.keys import Keys

CLOSED_FRESH_SECONDS = 0.25
"""How long a "closed" answer lets this worker POST without asking again. Another worker's
opening reaches it within this much (or at its own first failure); a closed breaker is what
nearly every POST finds, so asking once per note was a Redis round trip for nothing."""

BreakerStateName = Literal["closed", "open", "half_open"]

# KEYS[1] hash; ARGV endpoint, now, probe seconds -> "pass" | "probe" | "hold:<nextProbeAt>"
_ADMIT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 'pass' end
local st = cjson.decode(raw)
if st.state == 'closed' then return 'pass' end
local now = tonumber(ARGV[2])
if now >= tonumber(st.nextProbeAt) then
  st.state = 'half_open'
  st.nextProbeAt = now + tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(st))
  return 'probe'
end
return 'hold:' .. string.format('%.3f', st.nextProbeAt)
"""

# ARGV endpoint, now, threshold, probe seconds -> new state
_FAILURE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local st
if raw then st = cjson.decode(raw) else
  st = {state='closed', failures=0, openedAt=0, nextProbeAt=0} end
local now = tonumber(ARGV[2])
st.failures = st.failures + 1
if st.state ~= 'closed' or st.failures >= tonumber(ARGV[3]) then
  if st.state == 'closed' then st.openedAt = now end
  st.state = 'open'
  st.nextProbeAt = now + tonumber(ARGV[4])
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(st))
return st.state
"""

# ARGV endpoint -> the state before (now closed, failures forgotten)
_SUCCESS = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 'closed' end
local st = cjson.decode(raw)
if st.state == 'closed' and st.failures == 0 then return 'closed' end
redis.call('HSET', KEYS[1], ARGV[1],
  cjson.encode({state='closed', failures=0, openedAt=0, nextProbeAt=0}))
return st.state
"""


# ARGV endpoint -> the state; a closed breaker's failures forgotten, any other left alone
_RESET = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 'closed' end
local st = cjson.decode(raw)
if st.state ~= 'closed' or st.failures == 0 then return st.state end
st.failures = 0
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(st))
return 'closed'
"""


class BreakerState(msgspec.Struct, kw_only=True):
    """What `keys.breakers` holds per endpoint (read by operators' views)."""

    state: BreakerStateName = "closed"
    failures: int = 0
    openedAt: float = 0.0
    nextProbeAt: float = 0.0


class Admission(msgspec.Struct, frozen=True):
    go: bool
    probe: bool = False
    hold_until: float = 0.0
    """Epoch seconds until which messages for this endpoint wait in RabbitMQ."""


class Breaker:
    """The shared breaker of every endpoint, with the fleet-wide threshold and probe interval."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, failures: int, probe_seconds: float
    ) -> None:
        self.redis = redis
        self.key = keys.breakers
        self.failures = failures
        self.probe_seconds = probe_seconds
        self._admit = redis.register_script(_ADMIT)
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)
        self._closed_at: dict[str, float] = {}
        """Monotonic time Redis last answered "closed" for an endpoint."""

    async def admit(self, endpoint: str) -> Admission:
        seen = self._closed_at.get(endpoint)
        if seen is not None and time.monotonic() - seen < CLOSED_FRESH_SECONDS:
            return Admission(go=True)
        raw = await self._admit(keys=[self.key], args=[endpoint, time.time(), self.probe_seconds])
        answer = raw.decode() if isinstance(raw, bytes) else str(raw)
        if answer == "pass":
            self._closed_at[endpoint] = time.monotonic()
            return Admission(go=True)
        self._closed_at.pop(endpoint, None)
        if answer == "probe":
            return Admission(go=True, probe=True)
        return Admission(go=False, hold_until=float(answer.split(":", 1)[1]))

    async def failure(self, endpoint: str) -> BreakerStateName:
        self._closed_at.pop(endpoint, None)
        raw = await self._failure(
            keys=[self.key], args=[endpoint, time.time(), self.failures, self.probe_seconds]
        )
        state = raw.decode() if isinstance(raw, bytes) else str(raw)
        return "open" if state == "open" else "closed"

    async def success(self, endpoint: str) -> bool:
        """Close the breaker and forget failures; True when it was open or half open."""
        return self.reopened(endpoint, await self._success(keys=[self.key], args=[endpoint]))

    def reset_on(self, pipe: Pipeline, endpoint: str) -> None:
        """Successes written late (a worker's tally): they forget a closed breaker's failures
        but never close one opened since, which only its probe may do; pass the reply to
        `settled`."""
        pipe.eval(_RESET, 1, self.key, endpoint)

    async def reset(self, endpoint: str) -> None:
        self.settled(endpoint, await self.redis.eval(_RESET, 1, self.key, endpoint))

    def settled(self, endpoint: str, raw: object) -> None:
        """A reset's reply: "closed" is fresh news; anything else ends the cached answer."""
        if (raw.decode() if isinstance(raw, bytes) else str(raw)) == "closed":
            self._closed_at[endpoint] = time.monotonic()
        else:
            self._closed_at.pop(endpoint, None)

    def reopened(self, endpoint: str, raw: object) -> bool:
        """True when the success closed an open or half-open breaker."""
        self._closed_at[endpoint] = time.monotonic()
        return (raw.decode() if isinstance(raw, bytes) else str(raw)) != "closed"

    async def state(self, endpoint: str) -> BreakerState:
        raw = await self.redis.hget(self.key, endpoint)
        return msgspec.json.decode(raw, type=BreakerState) if raw else BreakerState()
