"""S3 object names for voice notes: the contract's `audio_<ms>_<instance>.<ext>`, never shared."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from fila.keys import Keys
from workers.storage import object_key

STAMP_MEMORY_SECONDS = 3600
"""How long an instance's last stamp is kept (clashes only happen within a millisecond)."""
_CLAIM_SCRIPT = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local stamp = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if stamp <= last then stamp = last + 1 end
local text = string.format('%.0f', stamp)
redis.call('SET', KEYS[2], text, 'EX', ARGV[4])
local name = ARGV[2] .. text .. ARGV[3]
redis.call('SET', KEYS[1], name, 'EX', ARGV[5])
return name
"""


class ObjectNames:
    """One name per event, unique fleet-wide, the same again when the event is redelivered.

    Two voice notes of one instance in the same millisecond would share a name, so each
    instance's stamps only go forward (a clash takes the next millisecond). One atomic round
    trip that touches only the keys it declares.
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys, event_ttl_seconds: int) -> None:
        self._script = redis.register_script(_CLAIM_SCRIPT)
        self._keys = keys
        self._event_ttl = event_ttl_seconds

    async def claim(self, idem: str, instance: str, mimetype: str) -> str:
        stamp = int(time.time() * 1000)
        head, _, tail = object_key(instance, mimetype, stamp).partition(str(stamp))
        claimed = await self._script(
            keys=[self._keys.event_object(instance, idem), self._keys.object_stamp(instance)],
            args=[stamp, head, tail, STAMP_MEMORY_SECONDS, self._event_ttl],
        )
        return claimed.decode() if isinstance(claimed, bytes) else str(claimed)
