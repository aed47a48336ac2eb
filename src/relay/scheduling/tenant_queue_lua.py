"""Lua of the Redis tenant queue: every scheduler step is one of these scripts (Redis 6.2+).

Keys of one Celery queue ``q`` share the hash tag ``{q}`` (base ``<prefix>:{q}:``):

=================  ======================================================================
``leases``         zset task id -> lease expiry (ms); its size is the queue's in-flight window
``l:<tq>``         zset of the leases of one (tenant, task type) pair: the counted semaphore
``w:<tq>``         list of the pair's waiting task ids (FIFO)
``i:<id>``         hash of one item: t tenant, k task type, c declared cost, b body, s submitted
                   (ms), st state, tok lease token, ch work charged at release, w wait observed,
                   rc times its lease was reclaimed, rt retries of the running attempt, rb body of
                   a retried message that arrived before its attempt ended
``runnable``       zset tq -> tenant's virtual runtime, for pairs with waiting work and a free slot
``limit``          hash tq -> N;  ``t:<tenant>`` set of the tenant's pairs;  ``count`` hash
                   tenant -> unfinished items (the tenant is active while > 0)
``est``            hash task type -> moving average of run time (the charge at release)
``retry``          zset of items between a retry and the retried message (deadline)
``vrt idle weight floor``  the fair-share state (``fairshare_redis``)
``seq stats hist``  token counter, event counters, queue-wait histogram
=================  ======================================================================

Item states: ``w`` waiting, ``l`` released (sent to Celery), ``r`` running, ``y`` retry pending,
``d`` done (kept ``done_retention`` seconds so a late copy is recognised). Time is Redis ``TIME``,
never a client clock. Every script returns strings, never Lua floats (Redis truncates those).
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.scheduling.fairshare_redis import FAIRSHARE_LUA, LUA_PRELUDE
from relay.scheduling.settings import SchedulingSettings

# ARGV[1] is the queue's window in every script (windows differ per queue); script arguments start
# at ARGV[2]. Settings that are the same for every call are compiled into the script
# (``constants``), which keeps the per-call arguments, and their encoding, short.
_HEAD = """
local LEASES = KEYS[1]
local B = string.sub(LEASES, 1, -7)
local VRT, IDLE, WEIGHT, FLOOR = B .. 'vrt', B .. 'idle', B .. 'weight', B .. 'floor'
local RUNNABLE, COUNT, LIMIT, EST = B .. 'runnable', B .. 'count', B .. 'limit', B .. 'est'
local SEQ, RETRY, STATS, HIST = B .. 'seq', B .. 'retry', B .. 'stats', B .. 'hist'
local WINDOW = tonumber(ARGV[1])
local NOW = clock_ms()
local function ikey(id) return B .. 'i:' .. id end
local function wkey(tq) return B .. 'w:' .. tq end
local function lkey(tq) return B .. 'l:' .. tq end
local function tkey(tenant) return B .. 't:' .. tenant end
local function tq_of(tenant, kind) return tenant .. '|' .. kind end
local function tenant_of(tq) return string.match(tq, '^([^|]*)|') end

-- a charge moves the tenant in the fair order: keep its runnable pairs' scores in step
local function on_vruntime(tenant, v)
  for _, tq in ipairs(redis.call('SMEMBERS', tkey(tenant))) do
    if redis.call('ZSCORE', RUNNABLE, tq) then redis.call('ZADD', RUNNABLE, num(v), tq) end
  end
end
"""

_TENANT_QUEUE = """
-- invariant: tq is in RUNNABLE iff it has waiting work and a free slot
local function tq_refresh(tq)
  local limit = tonumber(redis.call('HGET', LIMIT, tq) or '1')
  if redis.call('LLEN', wkey(tq)) > 0 and redis.call('ZCARD', lkey(tq)) < limit then
    redis.call('ZADD', RUNNABLE, redis.call('ZSCORE', VRT, tenant_of(tq)) or '0', tq)
  else
    redis.call('ZREM', RUNNABLE, tq)
  end
end

local function tq_lease(tq, id, expires)
  redis.call('ZADD', lkey(tq), expires, id)
  redis.call('ZADD', LEASES, expires, id)
end

local function tq_unlease(tq, id)
  redis.call('ZREM', lkey(tq), id)
  redis.call('ZREM', LEASES, id)
end

-- back to the head of its waiting list (it was first); the release's charge is refunded
local function tq_requeue(id, tenant, kind, charged)
  local tq = tq_of(tenant, kind)
  tq_unlease(tq, id)
  if charged then fs_charge(tenant, -charged) end
  -- a retried message that arrived early left its body: the next release sends that one
  local early = redis.call('HGET', ikey(id), 'rb')
  if early then redis.call('HSET', ikey(id), 'b', early) end
  redis.call('HSET', ikey(id), 'st', 'w')
  redis.call('HDEL', ikey(id), 'tok', 'ch', 'rb')
  redis.call('LPUSH', wkey(tq), id)
  tq_refresh(tq)
end

-- one item of the tenant is finished; the last one makes the tenant idle
local function tq_forget(tenant)
  if redis.call('HINCRBY', COUNT, tenant, -1) > 0 then return end
  redis.call('HDEL', COUNT, tenant)
  redis.call('HDEL', WEIGHT, tenant)
  for _, tq in ipairs(redis.call('SMEMBERS', tkey(tenant))) do
    redis.call('HDEL', LIMIT, tq)
    redis.call('ZREM', RUNNABLE, tq)
  end
  redis.call('DEL', tkey(tenant))
  fs_deactivate(tenant)
end

-- release work while the window has room: fair pick, take the slot, charge the estimate
local function tq_dispatch(self_id)
  local out, self_token = {}, false
  while redis.call('ZCARD', LEASES) < WINDOW do
    local top = redis.call('ZRANGE', RUNNABLE, 0, 0)
    if #top == 0 then break end
    local tq = top[1]
    local id = redis.call('LPOP', wkey(tq))
    local f = id and redis.call('HMGET', ikey(id), 't', 'k', 'c', 'b', 's')
    if not id or not f[1] then
      tq_refresh(tq)
    else
      local token = tostring(redis.call('INCR', SEQ))
      local est = tonumber(f[3]) or tonumber(redis.call('HGET', EST, f[2]) or DEFAULT_COST)
      local st, expires = 'l', NOW + DISPATCH_TTL
      if id == self_id then st, expires, self_token = 'r', NOW + LEASE_TTL, token end
      tq_lease(tq, id, expires)
      redis.call('HSET', ikey(id), 'st', st, 'tok', token, 'ch', num(est))
      fs_charge(f[1], est)
      tq_refresh(tq)
      redis.call('HINCRBY', STATS, 'released', 1)
      if id ~= self_id then out[#out + 1] = {id, token, f[1], f[2], f[4], f[5]} end
    end
  end
  return out, self_token
end
"""

_SUBMIT = """
local id, tenant, kind, cost = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local body, limit, weight = ARGV[6], ARGV[7], ARGV[8]
local item = ikey(id)
if redis.call('EXISTS', item) == 1 then
  redis.call('HINCRBY', STATS, 'duplicate', 1)
  return {'duplicate', {}}
end
local tq = tq_of(tenant, kind)
redis.call('HSET', item, 't', tenant, 'k', kind, 'b', body, 's', NOW, 'st', 'w')
if cost ~= '' then redis.call('HSET', item, 'c', cost) end
redis.call('HSET', LIMIT, tq, limit)
redis.call('SADD', tkey(tenant), tq)
redis.call('HINCRBY', COUNT, tenant, 1)
fs_activate(tenant, weight)
redis.call('RPUSH', wkey(tq), id)
tq_refresh(tq)
redis.call('HINCRBY', STATS, 'submitted', 1)
local out = tq_dispatch(false)
local status = 'queued'
for _, r in ipairs(out) do if r[1] == id then status = 'acquired' end end
return {status, out}
"""

_FINISH = """
local id, token, outcome, measured = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local retry_in = tonumber(ARGV[6])
local item = ikey(id)
local f = redis.call('HMGET', item, 't', 'k', 'c', 'st', 'tok', 'ch')
local status = 'stale'
if (f[4] == 'l' or f[4] == 'r') and f[5] == token then
  status = 'released'
  local tenant, kind = f[1], f[2]
  local tq = tq_of(tenant, kind)
  tq_unlease(tq, id)
  local charged = tonumber(f[6]) or 0
  local work = tonumber(f[3])
  if not work then
    work = measured or charged
    if measured then
      local old = tonumber(redis.call('HGET', EST, kind) or '')
      if old then measured = old + ALPHA * (measured - old) end
      redis.call('HSET', EST, kind, num(measured))
    end
  end
  -- the release charged an estimate; settle it against the work actually done
  fs_charge(tenant, work - charged)
  if outcome == 'retry' and redis.call('HEXISTS', item, 'rb') == 1 then
    -- Celery published the retried message before this finish, and it was dropped at the
    -- gate: the retry goes straight back into the fair order
    tq_requeue(id, tenant, kind, nil)
  elseif outcome == 'retry' then
    redis.call('HSET', item, 'st', 'y')
    redis.call('HDEL', item, 'tok', 'ch')
    redis.call('ZADD', RETRY, NOW + retry_in + DISPATCH_TTL, id)
    tq_refresh(tq)
  else
    redis.call('DEL', item)
    redis.call('HSET', item, 'st', 'd')
    redis.call('EXPIRE', item, KEEP)
    tq_refresh(tq)
    tq_forget(tenant)
  end
  redis.call('HINCRBY', STATS, outcome, 1)
else
  redis.call('HINCRBY', STATS, 'stale', 1)
end
local out = tq_dispatch(false)
return {status, out}
"""

_START = """
local id, token, body, retries = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local item = ikey(id)
local f = redis.call('HMGET', item, 't', 'k', 'st', 'tok', 's', 'w', 'rt')
if not f[3] then return {'unknown', '', '', {}} end
local tenant, kind = f[1], f[2]
-- only the first start of the current release runs: a redelivered copy of a message that
-- already started (state r) must not run a second time next to it
if f[3] == 'l' and f[4] == token then
  tq_lease(tq_of(tenant, kind), id, NOW + LEASE_TTL)
  redis.call('HSET', item, 'st', 'r', 'w', '1', 'rt', retries)
  local waited = ''
  if not f[6] then
    local s = (NOW - tonumber(f[5])) / 1000
    local idx = #BOUNDS + 1
    for i, bound in ipairs(BOUNDS) do
      if s <= bound then idx = i break end
    end
    redis.call('HINCRBY', HIST, tenant .. '|' .. idx, 1)
    redis.call('HINCRBYFLOAT', HIST, tenant .. '|sum', num(s))
    waited = num(s)
  end
  return {'run', token, waited, {}}
end
if f[3] == 'y' then
  -- a retried message: it goes back through the fair order (and may run at once)
  if body ~= '' then redis.call('HSET', item, 'b', body) end
  redis.call('ZREM', RETRY, id)
  tq_requeue(id, tenant, kind, nil)
  local out, mine = tq_dispatch(id)
  if mine then
    redis.call('HSET', item, 'rt', retries)
    return {'run', mine, '', out}
  end
  redis.call('HINCRBY', STATS, 'requeued', 1)
  return {'requeued', '', '', out}
end
if f[3] == 'r' and f[4] == token and body ~= '' and retries > tonumber(f[7] or '0') then
  -- the running attempt asked Celery for a retry, which published this message before the
  -- attempt reported its end: keep the message's body for the re-release and drop this copy
  redis.call('HSET', item, 'rb', body)
  redis.call('HINCRBY', STATS, 'requeued', 1)
  return {'requeued', '', '', {}}
end
redis.call('HINCRBY', STATS, 'duplicate', 1)
return {'duplicate', '', '', {}}
"""

_RENEW = """
local lost = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', ikey(id), 't', 'k', 'st', 'tok')
  if f[3] == 'r' and f[4] == token then
    tq_lease(tq_of(f[1], f[2]), id, NOW + LEASE_TTL)
  else
    lost[#lost + 1] = id
  end
end
return lost
"""

_RECLAIM = """
local reclaimed, lost = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', NOW, 'LIMIT', 0, BATCH)) do
  local f = redis.call('HMGET', ikey(id), 't', 'k', 'st', 'ch')
  if f[1] and (f[3] == 'l' or f[3] == 'r') then
    if redis.call('HINCRBY', ikey(id), 'rc', 1) > MAX_RECLAIMS then
      -- it killed its worker every time (e.g. a hard time limit): give it up, loudly
      local tq = tq_of(f[1], f[2])
      tq_unlease(tq, id)
      redis.call('DEL', ikey(id))
      redis.call('HSET', ikey(id), 'st', 'd')
      redis.call('EXPIRE', ikey(id), KEEP)
      tq_refresh(tq)
      tq_forget(f[1])
      lost[#lost + 1] = id
    else
      tq_requeue(id, f[1], f[2], tonumber(f[4]))
      reclaimed[#reclaimed + 1] = id
    end
  else
    redis.call('ZREM', LEASES, id)
  end
end
-- a retry whose retried message never arrived: release it through the fair order
for _, id in ipairs(redis.call('ZRANGEBYSCORE', RETRY, '-inf', NOW, 'LIMIT', 0, BATCH)) do
  redis.call('ZREM', RETRY, id)
  local f = redis.call('HMGET', ikey(id), 't', 'k', 'st')
  if f[3] == 'y' then
    tq_requeue(id, f[1], f[2], nil)
    reclaimed[#reclaimed + 1] = id
  end
end
redis.call('HINCRBY', STATS, 'reclaimed', #reclaimed)
if #lost > 0 then redis.call('HINCRBY', STATS, 'lost', #lost) end
local out = tq_dispatch(false)
return {reclaimed, out, lost}
"""

_ABANDON = """
local id, token = ARGV[2], ARGV[3]
local f = redis.call('HMGET', ikey(id), 't', 'k', 'st', 'tok', 'ch')
if f[3] == 'l' and f[4] == token then
  tq_requeue(id, f[1], f[2], tonumber(f[5]))
  return 1
end
return 0
"""

_OTHERS_WAITING = """
for _, tq in ipairs(redis.call('ZRANGE', RUNNABLE, 0, 63)) do
  if tenant_of(tq) ~= ARGV[2] then return 1 end
end
return 0
"""

_SNAPSHOT = """
local out = {}
local counts = redis.call('HGETALL', COUNT)
for i = 1, #counts, 2 do
  local tenant = counts[i]
  local waiting, running = 0, 0
  for _, tq in ipairs(redis.call('SMEMBERS', tkey(tenant))) do
    waiting = waiting + redis.call('LLEN', wkey(tq))
    running = running + redis.call('ZCARD', lkey(tq))
  end
  out[#out + 1] = {tenant, waiting, running, redis.call('ZSCORE', VRT, tenant) or '0',
                   redis.call('HGET', WEIGHT, tenant) or '1'}
end
return out
"""


def constants(settings: SchedulingSettings) -> str:
    """The settings compiled into the scripts, as Lua locals."""
    bounds = ", ".join(repr(float(b)) for b in settings.wait_buckets)
    return (
        f"local DISPATCH_TTL, LEASE_TTL = {int(settings.dispatch_ttl * 1000)}, "
        f"{int(settings.lease_ttl * 1000)}\n"
        f"local DEFAULT_COST, ALPHA = {settings.default_cost!r}, {settings.cost_smoothing!r}\n"
        f"local KEEP, BATCH = {settings.done_retention}, {settings.reclaim_batch}\n"
        f"local MAX_RECLAIMS = {settings.max_reclaims}\n"
        f"local BOUNDS = {{{bounds}}}\n"
    )


@dataclass(frozen=True)
class Scripts:
    """Lua source of every step, for one ``SchedulingSettings``."""

    submit: str
    finish: str
    start: str
    renew: str
    reclaim: str
    abandon: str
    others_waiting: str
    snapshot: str


def scripts(settings: SchedulingSettings) -> Scripts:
    """Compose the scripts with ``settings`` compiled in."""
    head = LUA_PRELUDE + constants(settings) + _HEAD + FAIRSHARE_LUA + _TENANT_QUEUE
    return Scripts(
        *(
            head + body
            for body in (
                _SUBMIT,
                _FINISH,
                _START,
                _RENEW,
                _RECLAIM,
                _ABANDON,
                _OTHERS_WAITING,
                _SNAPSHOT,
            )
        )
    )
