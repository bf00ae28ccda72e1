"""Feedback sessions in Redis: every state change is one Lua script, so replicas never race.

A session is a hash (`keys.feedback_session(id)`) plus its next due time (epoch ms) in the
sorted set `keys.feedback_sessions`. Whoever moves that score forward (compare-and-set) owns the
tick; a hash field `sendingUntil` marks a reaction in flight so the final one is never overtaken.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis

from fila.keys import Keys

_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state then return state end
redis.call('HSET', KEYS[1], 'instance', ARGV[1], 'chatId', ARGV[2], 'messageId', ARGV[3],
  'processType', ARGV[4], 'startedAt', ARGV[5], 'timeoutAt', ARGV[6], 'tick', 0,
  'state', 'active', 'fromMe', ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[7])
redis.call('HINCRBY', KEYS[3], 'totalStarted', 1)
return 'created'
"""

# ARGV: id, expected score, now, interval, sending lease, end lease, timeout emoji, token, cycle
_CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not score) or tonumber(score) ~= tonumber(ARGV[2]) then return {'skip'} end
local state = redis.call('HGET', KEYS[2], 'state')
if not state then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {'gone'}
end
local now = tonumber(ARGV[3])
if state == 'ending' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[6]), ARGV[1])
  return {'end', redis.call('HINCRBY', KEYS[2], 'endAttempts', 1)}
end
local timeout_at = tonumber(redis.call('HGET', KEYS[2], 'timeoutAt') or '0')
if now >= timeout_at then
  redis.call('HSET', KEYS[2], 'state', 'ending', 'endStatus', 'timeout', 'endReaction', ARGV[7],
    'endText', '', 'endReactionSent', 0, 'endTextSent', 0, 'endAttempts', 1, 'finishedAt', now)
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[6]), ARGV[1])
  return {'end', 1}
end
local nxt = tonumber(score) + tonumber(ARGV[4])
if nxt <= now then nxt = now + tonumber(ARGV[4]) end
if nxt > timeout_at then nxt = timeout_at end
redis.call('ZADD', KEYS[1], nxt, ARGV[1])
local sending = tonumber(redis.call('HGET', KEYS[2], 'sendingUntil') or '0')
if sending > now then return {'busy'} end
local tick = redis.call('HINCRBY', KEYS[2], 'tick', 1)
local index = (tick - 1) % tonumber(ARGV[9])
redis.call('HSET', KEYS[2], 'sendingUntil', now + tonumber(ARGV[5]), 'sendingBy', ARGV[8],
  'currentReaction', index, 'lastReactionAt', now)
return {'tick', index}
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'sendingBy') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'sendingUntil', 'sendingBy')
  return 1
end
return 0
"""

# ARGV: field. Only an end in progress is marked: a deleted or completed session stays gone.
_MARK = """
if redis.call('HGET', KEYS[1], 'state') ~= 'ending' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], '1')
return 1
"""

# ARGV: id, status, reaction, text, now, end lease
_BEGIN_END = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'active' then return state end
redis.call('HSET', KEYS[1], 'state', 'ending', 'endStatus', ARGV[2], 'endReaction', ARGV[3],
  'endText', ARGV[4], 'endReactionSent', 0, 'endTextSent', 0, 'endAttempts', 1,
  'finishedAt', ARGV[5])
redis.call('ZADD', KEYS[2], tonumber(ARGV[5]) + tonumber(ARGV[6]), ARGV[1])
return 'ok'
"""

# ARGV: id, now, status (a finished session counts towards the average processing time)
_COMPLETE = """
local started = redis.call('HGET', KEYS[1], 'startedAt')
if not started then return false end
local finished = tonumber(redis.call('HGET', KEYS[1], 'finishedAt') or ARGV[2])
local duration = finished - tonumber(started)
if duration < 0 then duration = 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'finished', 1)
redis.call('HINCRBY', KEYS[3], 'totalDurationMs', duration)
redis.call('HINCRBY', KEYS[3], 'status:' .. ARGV[3], 1)
return {started, tostring(finished), tostring(duration)}
"""

# ARGV: id, status counter to bump
_REMOVE = """
local existed = redis.call('DEL', KEYS[1])
local ranked = redis.call('ZREM', KEYS[2], ARGV[1])
if existed + ranked == 0 then return 0 end
redis.call('HINCRBY', KEYS[3], 'status:' .. ARGV[2], 1)
return 1
"""

# ARGV: id, now, grace. Decides and removes in one step, so a session being created or ended
# at the same moment is never mistaken for an orphan.
_REMOVE_ORPHAN = """
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
local exists = redis.call('EXISTS', KEYS[1]) == 1
if (not exists) and (not score) then return '' end
local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[3])
local reason = ''
if not exists then
  reason = 'no data'
elseif not score then
  reason = 'not scheduled'
else
  local h = redis.call('HMGET', KEYS[1], 'instance', 'chatId', 'messageId', 'startedAt',
    'timeoutAt', 'state')
  for i = 1, 6 do
    if (not h[i]) or h[i] == '' then reason = 'missing field' end
  end
  if reason == '' and ((not tonumber(h[4])) or (not tonumber(h[5]))) then
    reason = 'malformed'
  end
  if reason == '' and tonumber(score) < cutoff then reason = 'not driven' end
  if reason == '' and tonumber(h[5]) < cutoff then reason = 'expired' end
end
if reason == '' then return '' end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'status:orphaned', 1)
return reason
"""

FIELDS = ("instance", "chatId", "messageId", "startedAt", "timeoutAt", "state")
"""Hash fields without which a session cannot be driven (else it is an orphan)."""


class Session(msgspec.Struct, kw_only=True):
    """A session as stored in its Redis hash."""

    id: str
    instance: str
    chatId: str
    messageId: str
    processType: str
    startedAt: int
    timeoutAt: int
    state: str
    fromMe: bool = False
    """Key of the reacted-to message: sent by the instance's own phone (absent in old sessions)."""
    tick: int = 0
    currentReaction: int | None = None
    endStatus: str = ""
    endReaction: str = ""
    endText: str = ""
    endReactionSent: bool = False
    endTextSent: bool = False
    endAttempts: int = 0
    finishedAt: int | None = None
    sendingUntil: int = 0
    sendingBy: str = ""


def session_id(instance: str, chat_id: str, message_id: str) -> str:
    return f"{instance}:{chat_id}:{message_id}"


def _text(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }


def parse(sid: str, raw: Mapping[Any, Any]) -> Session | None:
    """The session in a raw hash, or None when a needed field is missing or malformed."""
    h = _text(raw)
    if any(not h.get(f) for f in FIELDS):
        return None
    try:
        current = h.get("currentReaction")
        finished = h.get("finishedAt")
        return Session(
            id=sid,
            instance=h["instance"],
            chatId=h["chatId"],
            messageId=h["messageId"],
            processType=h.get("processType", ""),
            startedAt=int(h["startedAt"]),
            timeoutAt=int(h["timeoutAt"]),
            state=h["state"],
            fromMe=h.get("fromMe") == "1",
            tick=int(h.get("tick") or 0),
            currentReaction=int(current) if current not in (None, "") else None,
            endStatus=h.get("endStatus", ""),
            endReaction=h.get("endReaction", ""),
            endText=h.get("endText", ""),
            endReactionSent=h.get("endReactionSent") == "1",
            endTextSent=h.get("endTextSent") == "1",
            endAttempts=int(h.get("endAttempts") or 0),
            finishedAt=int(finished) if finished else None,
            sendingUntil=int(h.get("sendingUntil") or 0),
            sendingBy=h.get("sendingBy", ""),
        )
    except ValueError:
        return None


class Claim(msgspec.Struct, frozen=True):
    """What the owner of a due tick must do: send reaction `index`, or run the session's end."""

    kind: Literal["tick", "end", "skip"]
    index: int = 0
    token: str = ""


class Completed(msgspec.Struct, frozen=True):
    startedAt: int
    finishedAt: int
    durationMs: int


class FeedbackStore:
    """The Redis side of feedback sessions; no HTTP, no timers."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._start = redis.register_script(_START)
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._mark = redis.register_script(_MARK)
        self._begin_end = redis.register_script(_BEGIN_END)
        self._complete = redis.register_script(_COMPLETE)
        self._remove = redis.register_script(_REMOVE)
        self._remove_orphan = redis.register_script(_REMOVE_ORPHAN)

    async def create(self, s: Session) -> str:
        """'created', or the state of the session already holding that id."""
        result = await self._start(
            keys=[
                self.keys.feedback_session(s.id),
                self.keys.feedback_sessions,
                self.keys.feedback_stats,
            ],
            args=[
                s.instance,
                s.chatId,
                s.messageId,
                s.processType,
                s.startedAt,
                s.timeoutAt,
                s.id,
                "1" if s.fromMe else "0",
            ],
        )
        return _str(result)

    async def get(self, sid: str) -> Session | None:
        return parse(sid, await self.redis.hgetall(self.keys.feedback_session(sid)))

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        rows: list[Any] = await self.redis.zrangebyscore(
            self.keys.feedback_sessions, "-inf", now_ms, start=0, num=limit, withscores=True
        )
        return [(_str(member), int(score)) for member, score in rows]

    async def next_due(self) -> int | None:
        rows: list[Any] = await self.redis.zrange(
            self.keys.feedback_sessions, 0, 0, withscores=True
        )
        return int(rows[0][1]) if rows else None

    async def claim(
        self,
        sid: str,
        score: int,
        now_ms: int,
        *,
        interval_ms: int,
        sending_lease_ms: int,
        end_lease_ms: int,
        timeout_emoji: str,
        cycle: int,
    ) -> Claim:
        token = uuid.uuid4().hex
        result = await self._claim(
            keys=[self.keys.feedback_sessions, self.keys.feedback_session(sid)],
            args=[
                sid,
                score,
                now_ms,
                interval_ms,
                sending_lease_ms,
                end_lease_ms,
                timeout_emoji,
                token,
                cycle,
            ],
        )
        kind = _str(result[0])
        if kind == "tick":
            return Claim("tick", int(result[1]), token)
        if kind == "end":
            return Claim("end", int(result[1]))
        return Claim("skip")

    async def release(self, sid: str, token: str) -> None:
        await self._release(keys=[self.keys.feedback_session(sid)], args=[token])

    async def begin_end(
        self, sid: str, status: str, reaction: str, text: str, now_ms: int, lease_ms: int
    ) -> str:
        """'ok', 'missing', or the state that prevents ending ('ending')."""
        result = await self._begin_end(
            keys=[self.keys.feedback_session(sid), self.keys.feedback_sessions],
            args=[sid, status, reaction, text, now_ms, lease_ms],
        )
        return _str(result)

    async def mark(self, sid: str, field: str) -> bool:
        """Record a step of an end as done; False when the session is no longer ending."""
        return bool(await self._mark(keys=[self.keys.feedback_session(sid)], args=[field]))

    async def reschedule(self, sid: str, at_ms: int) -> None:
        await self.redis.zadd(self.keys.feedback_sessions, {sid: at_ms}, xx=True)

    async def complete(self, sid: str, now_ms: int, status: str) -> Completed | None:
        result = await self._complete(
            keys=[
                self.keys.feedback_session(sid),
                self.keys.feedback_sessions,
                self.keys.feedback_stats,
            ],
            args=[sid, now_ms, status],
        )
        if not result:
            return None
        started, finished, duration = (int(_str(x)) for x in result)
        return Completed(started, finished, duration)

    async def remove(self, sid: str, status: str) -> bool:
        result = await self._remove(
            keys=[
                self.keys.feedback_session(sid),
                self.keys.feedback_sessions,
                self.keys.feedback_stats,
            ],
            args=[sid, status],
        )
        return bool(result)

    async def remove_if_orphan(self, sid: str, now_ms: int, grace_ms: int) -> str:
        """Why the session was removed as an orphan, or '' when it is healthy (or gone)."""
        result = await self._remove_orphan(
            keys=[
                self.keys.feedback_session(sid),
                self.keys.feedback_sessions,
                self.keys.feedback_stats,
            ],
            args=[sid, now_ms, grace_ms],
        )
        return _str(result)

    async def scheduled(self) -> dict[str, int]:
        rows: list[Any] = await self.redis.zrange(
            self.keys.feedback_sessions, 0, -1, withscores=True
        )
        return {_str(member): int(score) for member, score in rows}

    async def load(self, ids: list[str]) -> list[tuple[str, Session | None]]:
        pipe = self.redis.pipeline(transaction=False)
        for sid in ids:
            pipe.hgetall(self.keys.feedback_session(sid))
        raws = await pipe.execute()
        return [(sid, parse(sid, raw)) for sid, raw in zip(ids, raws, strict=True)]

    async def stored_ids(self) -> list[str]:
        """Ids of every session hash (orphans included), by SCAN."""
        base = self.keys.feedback_session("")
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", base) + "*"
        return [
            _str(key)[len(base) :] async for key in self.redis.scan_iter(match=pattern, count=500)
        ]

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.feedback_stats)
        return {k: int(v) for k, v in _text(raw).items()}


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
