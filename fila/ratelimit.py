"""The token bucket shared by every worker: work-conserving weighted fairness, one Lua call.

Why this design. A per-instance hard cap refuses voice notes while the fleet is idle, which is
lost work nobody asked for; plain first-come-first-served lets one busy instance starve the
rest once tokens are scarce. The rule here is the one hierarchical link-sharing schedulers
(HTB, CBQ) use, applied to one global bucket:

* **Free zone.** While the global bucket holds more than its *reserve* (``reservePercent`` of
  its capacity), any event is admitted, whatever its instance has used: fairness never costs
  an admission while there is room.
* **Contention.** Once the level is at or below the reserve, only an instance within its fair
  share may take a token. Its share is a bucket of its own refilled at
  ``refillPerMinute × weight ÷ (total weight of the instances active in the last
  activeWindowSeconds)`` and holding ``instanceCapacity × weight``: the refill is divided among
  whoever is actually sending, by weight, so the sum of the shares is exactly the global
  refill. Draws in the free zone also empty the share bucket (never below zero), so an
  instance that took more than its share cannot then also dip into the reserve.

Steady state under contention: instances within their share are always admitted from the
reserve; the surplus they leave spills above the reserve, where it goes to whoever asks (the
hot instances), so no token is left unused except the reserve itself. Between instances that
all exceed their shares the split follows their weights, since only share tokens reach the
reserve. Refused events under the ``defer`` policy get a slot on a per-instance virtual clock
spaced at that instance's share rate, so a backlog comes back interleaved with other
instances' events rather than all at once, one instance first.

Time comes from the Redis server, so every worker process agrees on it. All keys share the
``{bucket}`` hash tag (see `fila.keys`): the script touches them together.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from fila.keys import Keys
from fila.models import RateLimitConfig

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ACTIVE = """
-- The active set: instances that asked in the last window, with their weights and sum.
local function active(ACTIVE, AW, WSUM, window)
  local wsum = tonumber(redis.call('GET', WSUM) or '0')
  local gone = redis.call('ZRANGEBYSCORE', ACTIVE, '-inf', now - window, 'LIMIT', 0, 100)
  for _, m in ipairs(gone) do
    wsum = wsum - (tonumber(redis.call('HGET', AW, m)) or 0)
    redis.call('HDEL', AW, m)
    redis.call('ZREM', ACTIVE, m)
  end
  return wsum, #gone
end
-- The refill an instance gets: its weight over the active weight, itself counted once.
local function share(wsum, mine, weight, grate)
  local total = wsum
  if mine == nil then total = wsum + weight end
  if total < weight then total = weight end
  return total, grate * weight / total
end
local function level(key, cap, rate)
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or ts == nil then return cap end
  return math.min(cap, tokens + math.max(0, now - ts) * rate)
end
"""

_SCRIPT = (
    _NOW
    + _ACTIVE
    + """
local gcap, grate = tonumber(ARGV[1]), tonumber(ARGV[2])
local icap, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local instance, weight = ARGV[5], tonumber(ARGV[6])
local reserve, window = tonumber(ARGV[7]), tonumber(ARGV[8])
local defer = tonumber(ARGV[9])
local G, S, ACTIVE, AW, WSUM = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local wsum, gone = active(ACTIVE, AW, WSUM, window)
local mine = tonumber(redis.call('HGET', AW, instance))
if cost > 0 then
  wsum = wsum + weight - (mine or 0)
  redis.call('HSET', AW, instance, weight)
  redis.call('ZADD', ACTIVE, now, instance)
  mine = weight
end
if wsum < 0 then wsum = 0 end
if cost > 0 or gone > 0 then redis.call('SET', WSUM, wsum, 'PX', window * 2 + 60000) end
local total, srate = share(wsum, mine, weight, grate)
local scap = icap * weight

local g = level(G, gcap, grate)
local s = level(S, scap, srate)
local ok, wait, zone = 0, 0, 0
if cost > 0 then
  if g - cost >= reserve then
    ok, zone = 1, 1
  elseif g >= cost and s >= cost then
    ok, zone = 1, 2
  end
  if ok == 1 then
    g = g - cost
    s = math.max(0, s - cost)
  else
    local wfree = (reserve + cost - g) / grate
    local wshare = 0
    if g < cost then wshare = (cost - g) / grate end
    if s < cost then wshare = math.max(wshare, (cost - s) / srate) end
    wait = math.min(wfree, wshare)
    if defer == 1 then
      local due = tonumber(redis.call('HGET', S, 'due') or '0')
      due = math.max(due, now) + cost / srate
      redis.call('HSET', S, 'due', tostring(due))
      wait = math.max(wait, due - now)
    end
    wait = math.ceil(wait)
  end
  redis.call('HSET', G, 'tokens', tostring(g), 'ts', now)
  redis.call('HSET', S, 'tokens', tostring(s), 'ts', now)
  local due = tonumber(redis.call('HGET', S, 'due') or '0')
  local keep = math.max(math.ceil(scap / srate), due - now)
  redis.call('PEXPIRE', S, math.min(keep, 86400000) + 60000)
  redis.call('PEXPIRE', ACTIVE, window * 2 + 60000)
  redis.call('PEXPIRE', AW, window * 2 + 60000)
end
return {ok, tostring(g), tostring(s), wait, zone, tostring(srate * 60000), tostring(total)}
"""
)

_PEEK_MANY = (
    _NOW
    + _ACTIVE
    + """
-- Levels of many shares at once (KEYS[5..] with names and weights in ARGV[5..]), taking
-- nothing and marking nobody active: the fleet table's read, one call per slice.
local gcap, grate = tonumber(ARGV[1]), tonumber(ARGV[2])
local icap, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local G, ACTIVE, AW, WSUM = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local wsum, gone = active(ACTIVE, AW, WSUM, window)
if wsum < 0 then wsum = 0 end
if gone > 0 then redis.call('SET', WSUM, wsum, 'PX', window * 2 + 60000) end
local out = {tostring(level(G, gcap, grate))}
for i = 5, #KEYS do
  local instance, weight = ARGV[2 * i - 5], tonumber(ARGV[2 * i - 4])
  local mine = tonumber(redis.call('HGET', AW, instance))
  local total, srate = share(wsum, mine, weight, grate)
  out[#out + 1] = tostring(level(KEYS[i], icap * weight, srate))
  out[#out + 1] = tostring(srate * 60000)
  out[#out + 1] = tostring(total)
end
return out
"""
)

RESERVE_PERCENT_MAX = 90
"""A reserve above this would leave almost nothing to the free zone."""
WEIGHT_MIN, WEIGHT_MAX = 1, 10
"""Weights are whole numbers 1-10: the priority on global.messages is the weight itself."""


def problems(config: RateLimitConfig) -> list[tuple[str, str]]:
    """(field, rule) for each value the limiter cannot work with; empty when all are fine."""
    out: list[tuple[str, str]] = []
    if config.capacity < 1:
        out.append(("capacity", "must be ≥ 1"))
    if not config.refillPerMinute > 0:
        out.append(("refillPerMinute", "must be > 0"))
    if not 0 <= config.reservePercent <= RESERVE_PERCENT_MAX:
        out.append(("reservePercent", f"must be 0 to {RESERVE_PERCENT_MAX}"))
    if config.instanceCapacity < 1:
        out.append(("instanceCapacity", "must be ≥ 1"))
    if config.activeWindowSeconds < 1:
        out.append(("activeWindowSeconds", "must be ≥ 1"))
    for instance, weight in config.weights.items():
        if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
            out.append((f"weights.{instance}", f"must be {WEIGHT_MIN} to {WEIGHT_MAX}"))
    return out


def priority_of(config: RateLimitConfig, instance: str) -> int:
    """Priority on global.messages (0-10): the weight, so heavier instances overtake."""
    return weight_of(config, instance)


ZONES = {0: "refused", 1: "free", 2: "share"}
"""Where an admission's token came from (`Admission.zone`)."""


class Admission(msgspec.Struct, frozen=True):
    admitted: bool
    globalTokens: float
    instanceTokens: float
    """The instance's fair-share bucket after the call."""
    retryAfterMs: int
    """When refused: how long until a token is there for this instance (its slot, in defer)."""
    zone: str = "refused"
    """free: above the reserve; share: from the reserve, within the instance's share."""
    sharePerMinute: float = 0.0
    """The instance's fair share of the refill at this moment."""
    activeWeight: float = 0.0
    """Total weight the refill is shared among (the active instances, this one included)."""


def weight_of(config: RateLimitConfig, instance: str) -> int:
    """An instance's weight: 1 unless the operator set another."""
    return config.weights.get(instance, 1)


def reserve_tokens(config: RateLimitConfig) -> float:
    """Tokens of the global bucket held back for instances within their fair share."""
    return config.capacity * config.reservePercent / 100.0


class TokenBucket:
    """Admission against the global bucket and the instance's fair share, atomically."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(_SCRIPT)
        self._peek_many = redis.register_script(_PEEK_MANY)

    async def acquire(self, instance: str, config: RateLimitConfig, cost: int = 1) -> Admission:
        raw = await self._script(keys=self._keys_for(instance), args=_args(config, instance, cost))
        return _admission(raw)

    async def peek(self, instance: str, config: RateLimitConfig) -> Admission:
        """Current levels, taking nothing and marking nobody active."""
        return await self.acquire(instance, config, cost=0)

    async def peek_many(self, instances: list[str], config: RateLimitConfig) -> list[Admission]:
        """Levels of many instances' shares in one call (the fleet table's rows)."""
        if not instances:
            return []
        k = self._keys
        keys = [k.bucket_global, k.bucket_active, k.bucket_active_weights]
        keys += [k.bucket_active_weight_sum, *map(k.bucket_instance, instances)]
        args: list[Any] = [
            config.capacity,
            config.refillPerMinute / 60000.0,
            config.instanceCapacity,
            int(config.activeWindowSeconds * 1000),
        ]
        for instance in instances:
            args += [instance, weight_of(config, instance)]
        raw = await self._peek_many(keys=keys, args=args)
        g = float(raw[0])
        return [
            Admission(
                admitted=False,
                globalTokens=g,
                instanceTokens=float(raw[i]),
                retryAfterMs=0,
                sharePerMinute=float(raw[i + 1]),
                activeWeight=float(raw[i + 2]),
            )
            for i in range(1, len(raw), 3)
        ]

    async def reset(self) -> None:
        """Fill the global bucket (after a capacity change, for instance)."""
        await self._redis.delete(self._keys.bucket_global)

    def _keys_for(self, instance: str) -> list[str]:
        k = self._keys
        return [
            k.bucket_global,
            k.bucket_instance(instance),
            k.bucket_active,
            k.bucket_active_weights,
            k.bucket_active_weight_sum,
        ]


def _args(config: RateLimitConfig, instance: str, cost: int) -> list[Any]:
    return [
        config.capacity,
        config.refillPerMinute / 60000.0,
        config.instanceCapacity,
        cost,
        instance,
        weight_of(config, instance),
        reserve_tokens(config),
        int(config.activeWindowSeconds * 1000),
        1 if config.policy == "defer" else 0,
    ]


def _admission(raw: Any) -> Admission:
    ok, g, s, wait, zone, share, total = raw
    return Admission(
        admitted=int(ok) == 1,
        globalTokens=float(g),
        instanceTokens=float(s),
        retryAfterMs=int(wait),
        zone=ZONES.get(int(zone), "refused"),
        sharePerMinute=float(share),
        activeWeight=float(total),
    )
