"""The fair-share policy of ``fairshare.py`` on Redis: virtual runtimes in a sorted set, Lua steps.

``FAIRSHARE_LUA`` is a Lua library (activate, deactivate, charge, floor) that the tenant queue's
scripts include, so a release picks and charges in the same atomic step that takes the slot.
``RedisFairShare`` runs the same library on its own keys; it exists so the Lua port can be checked
against the pure policy pick for pick, and for callers that only need the fair order.

Keys (one Redis Cluster hash tag per scope, so every step touches one slot):
``<base>vrt`` zset tenant -> virtual runtime (active tenants), ``<base>idle`` zset of debts kept
by idle tenants, ``<base>weight`` hash tenant -> weight, ``<base>floor`` the current minimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from relay.scheduling.fairshare import MIN_CHARGE, NEWCOMER_LEAD

# Lua numbers reach Redis through "%.14g" unless formatted; 17 digits round-trip a double, so the
# port stays bit-for-bit comparable with the Python policy.
LUA_PRELUDE = """
local function num(v) return string.format('%.17g', v) end
-- bytewise, as Python compares str ids (Lua's '<' follows the server's collation locale)
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

FAIRSHARE_LUA = f"""
local NEWCOMER_LEAD = {NEWCOMER_LEAD!r}
local function fs_floor() return tonumber(redis.call('GET', FLOOR) or '0') end

local function fs_advance_floor()
  local low = redis.call('ZRANGE', VRT, 0, 0, 'WITHSCORES')
  local floor = fs_floor()
  if #low == 2 and tonumber(low[2]) ~= floor then
    floor = tonumber(low[2])
    redis.call('SET', FLOOR, num(floor))
  end
  -- a debt at or below the floor no longer changes where its tenant starts
  redis.call('ZREMRANGEBYSCORE', IDLE, '-inf', num(floor))
end

local function fs_activate(tenant, weight)
  redis.call('HSET', WEIGHT, tenant, weight)
  local current = redis.call('ZSCORE', VRT, tenant)
  if current then return tonumber(current) end
  local start = fs_floor() - NEWCOMER_LEAD
  local debt = tonumber(redis.call('ZSCORE', IDLE, tenant))
  if debt and debt > start then start = debt end
  redis.call('ZREM', IDLE, tenant)
  redis.call('ZADD', VRT, num(start), tenant)
  return start
end

local function fs_deactivate(tenant)
  local v = tonumber(redis.call('ZSCORE', VRT, tenant))
  redis.call('ZREM', VRT, tenant)
  if v and v > fs_floor() then redis.call('ZADD', IDLE, num(v), tenant) end
  fs_advance_floor()
end

local function fs_charge(tenant, work)
  local w = tonumber(redis.call('HGET', WEIGHT, tenant) or '1')
  local v = tonumber(redis.call('ZINCRBY', VRT, num(work / w), tenant))
  on_vruntime(tenant, v)
  fs_advance_floor()
  return v
end
"""

_STANDALONE_HEAD = """
local B = string.sub(KEYS[1], 1, -4)
local VRT, IDLE, WEIGHT, FLOOR = KEYS[1], B .. 'idle', B .. 'weight', B .. 'floor'
local function on_vruntime(tenant, v) end
"""

_ACTIVATE = "return num(fs_activate(ARGV[1], ARGV[2]))"
_DEACTIVATE = "fs_deactivate(ARGV[1]) return 1"
_CHARGE = "return num(fs_charge(ARGV[1], tonumber(ARGV[2])))"
_PICK_AND_CHARGE = """
local best, best_v = false, nil
for i = 2, #ARGV do
  local v = tonumber(redis.call('ZSCORE', VRT, ARGV[i]))
  if v and (best_v == nil or v < best_v or (v == best_v and before(ARGV[i], best))) then
    best, best_v = ARGV[i], v
  end
end
if best then fs_charge(best, tonumber(ARGV[1])) end
return best
"""


def _script(body: str) -> str:
    return LUA_PRELUDE + _STANDALONE_HEAD + FAIRSHARE_LUA + body


class RedisFairShare:
    """``FairShare`` on Redis for one scope (e.g. a queue); every method is one Lua call."""

    def __init__(self, client: redis.Redis, prefix: str, scope: str) -> None:
        self.redis = client
        self.vrt_key = f"{prefix}:{{{scope}}}:vrt"
        base = self.vrt_key[: -len("vrt")]
        self.floor_key = base + "floor"
        self._activate = client.register_script(_script(_ACTIVATE))
        self._deactivate = client.register_script(_script(_DEACTIVATE))
        self._charge = client.register_script(_script(_CHARGE))
        self._pick = client.register_script(_script(_PICK_AND_CHARGE))

    def activate(self, tenant: str, weight: int) -> float:
        """Mark ``tenant`` active with ``weight``; returns its virtual runtime."""
        return float(self._call(self._activate, tenant, weight))

    def deactivate(self, tenant: str) -> None:
        """``tenant`` has nothing waiting or running any more."""
        self._call(self._deactivate, tenant)

    def charge(self, tenant: str, work: float) -> float:
        """Add ``work`` to an active tenant; returns its new virtual runtime."""
        return float(self._call(self._charge, tenant, repr(work)))

    def pick_and_charge(self, candidates: Sequence[str], work: float) -> str | None:
        """Atomically pick the active candidate with the smallest virtual runtime and charge it."""
        if not candidates:
            return None
        picked = self._call(self._pick, repr(max(work, MIN_CHARGE)), *candidates)
        return _text(picked) if picked else None

    def vruntimes(self) -> dict[str, float]:
        """Virtual runtime of every active tenant."""
        pairs: list[tuple[Any, float]] = self.redis.zrange(self.vrt_key, 0, -1, withscores=True)  # type: ignore[assignment]
        return {_text(t): float(v) for t, v in pairs}

    def floor(self) -> float:
        """The minimum virtual runtime of the active tenants: where new tenants start."""
        raw = self.redis.get(self.floor_key)
        return float(_text(raw)) if raw else 0.0

    def _call(self, script: Any, *args: Any) -> Any:
        return script(keys=[self.vrt_key], args=list(args))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
