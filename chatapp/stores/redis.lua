-- chatapp's Redis store: every operation of the Store interface as one
-- atomic script (chatapp/stores/redis.py calls it; stores/memory.py is the
-- same logic in Python, and tests/domain/test_rooms.py holds both to it).
--
-- Rules kept twice, here and in stores/memory.py (change both together):
--   rule                                         here                      memory.py
--   a room expires idle_ttl after it was created  live_room, set_idle,      _live_room, _expired,
--     or its last present member ended (pending   set_busy, create_room,    _set_idle, create_room,
--     members keep no room alive)                 end_membership            _end
--   max_rooms, rooms_per_address (live rooms)     ops.create_room,          create_room,
--                                                 index_room, delete_room   _purge_rooms, _delete
--   history: at most history_limit messages and   record                    _record
--     history_bytes of text; cids of dropped
--     messages are forgotten
--   pending members end at their connect-by       drop_stale                _drop_stale
--   name keys unique, max_members seats           ops.add_member            add_member
--   an ended membership renews under its name     ops.connect               _renew
--   history after last_id, truncated              history                   _history
--   send budget, token buckets (time only         append_line, ops.bucket   append, _refill
--     refills)
--
-- KEYS[1]  the room's base key "<prefix>{CODE}" (or a bucket key)
-- KEYS[2]  the lease index, a sorted set of "CODE|member|connection" by deadline
-- ARGV[1]  operation name, ARGV[2] now (epoch seconds, the app's clock),
-- ARGV[3]  limits as JSON, ARGV[4] the calling process's host id,
-- ARGV[5]  a deadline on Redis's own clock ('' for none): a call that runs
--          later, after the caller stopped waiting for its answer (a stalled
--          or slowed Redis), does nothing and answers "~late",
-- ARGV[6...] the operation's arguments.
--
-- A room is a hash (last message id, join sequence, idle-since, cr: its
-- creator's address key, bytes: its history's text bytes) plus:
--   :m  member id -> member JSON     :h  name key -> member id
--   :f  ended (renewable) member id -> {n, k}, :fo their order
--   :o  present members by join order (the `members` list)
--   :l  history, JSON messages oldest first
--   :c  "member|cid" -> message id,  :ci message id -> "member|cid"
--   :s  host id -> lease deadline: the processes that hold sockets of the room
-- Member JSON: n name, k name keys, cb connect-by deadline, p present (0/1),
-- cs connections {id: lease deadline}, e epoch (bumped when the last
-- connection goes), st/sa send tokens and when, ty last relayed typing.
--
-- Global keys: "<prefix>rooms", a sorted set of every room code by the
-- deadline its room expires at (+inf while a member is present), so that
-- rooms are counted without a scan; "<prefix>addr:<address key>", the same
-- for the rooms one address created. Entries past their deadline are
-- dropped when a room is created (their rooms expired); an address's set
-- expires a minute after its last room does.
--
-- Every message recorded here is published at once to each other process
-- in :s, on its own channel "<prefix>host:<id>", as JSON {r: code, m:
-- message, p: present names when they changed}: the recording process
-- delivers to its own sockets, and nothing waits for a second round trip.

local R = KEYS[1]
local LEASES = KEYS[2]
local OP = ARGV[1]
local NOW = tonumber(ARGV[2])
local LIMITS = cjson.decode(ARGV[3])
local HOST = ARGV[4]
local DEADLINE = tonumber(ARGV[5])
local M, H, F, FO, O, L, C, CI, S =
  R .. ':m', R .. ':h', R .. ':f', R .. ':fo', R .. ':o', R .. ':l', R .. ':c', R .. ':ci', R .. ':s'
local ROOM_KEYS = {R, M, H, F, FO, O, L, C, CI, S}
local CODE = string.match(R, '{(.*)}')
local PREFIX = string.match(LEASES, '^(.*)leases$')
local ROOMS = PREFIX .. 'rooms'
local function address_rooms(address) return PREFIX .. 'addr:' .. address end
-- A member whose last connection went holds this lease entry for the leave
-- grace, so that any live process ends the membership if the process that
-- saw it go dies first (or is shutting down).
local function gone_entry(id) return CODE .. '|' .. id .. '|~gone' end

-- helpers --------------------------------------------------------------------

local function delete_room()
  local creator = redis.call('HGET', R, 'cr')
  if creator then redis.call('ZREM', address_rooms(creator), CODE) end
  redis.call('ZREM', ROOMS, CODE)
  redis.call('DEL', unpack(ROOM_KEYS))
end

-- Keep the room's entries in ROOMS and its creator's set at its deadline.
local function index_room(deadline)
  redis.call('ZADD', ROOMS, deadline, CODE)
  local creator = redis.call('HGET', R, 'cr')
  if not creator then return end  -- a room made before creators were kept
  local mine = address_rooms(creator)
  redis.call('ZADD', mine, deadline, CODE)
  local last = redis.call('ZRANGE', mine, -1, -1, 'WITHSCORES')[2]
  if last == 'inf' then
    redis.call('PERSIST', mine)
  else
    redis.call('PEXPIREAT', mine, math.floor((tonumber(last) + 60) * 1000))
  end
end

-- The room as it is now, or nil when it does not exist or has expired.
local function live_room()
  local idle = redis.call('HGET', R, 'idle')
  if not idle then return nil end
  if idle ~= '' and NOW >= tonumber(idle) + LIMITS.idle_ttl then
    delete_room()
    return nil
  end
  return idle
end

-- Redis deletes an idle room's keys by itself a while after it expires, a
-- safety net under the lazy check above.
local function set_idle(since)
  redis.call('HSET', R, 'idle', since)
  index_room(since + LIMITS.idle_ttl)
  local at = math.floor((since + LIMITS.idle_ttl + 60) * 1000)
  for _, key in ipairs(ROOM_KEYS) do redis.call('PEXPIREAT', key, at) end
end

local function set_busy()
  redis.call('HSET', R, 'idle', '')
  index_room('+inf')
  for _, key in ipairs(ROOM_KEYS) do redis.call('PERSIST', key) end
end

local function refresh_idle_expiry()
  local idle = redis.call('HGET', R, 'idle')
  if idle and idle ~= '' then set_idle(tonumber(idle)) end
end

local function get_member(id)
  local raw = redis.call('HGET', M, id)
  if raw then return cjson.decode(raw) end
  return nil
end

local function put_member(id, member)
  redis.call('HSET', M, id, cjson.encode(member))
end

local function has_conns(member)
  return next(member.cs) ~= nil
end

local function seat(id, name, keys, connect_by)
  put_member(id, {n = name, k = keys, cb = connect_by, p = 0, cs = {}, e = 0, st = -1, sa = 0, ty = 0})
  for _, key in ipairs(keys) do redis.call('HSET', H, key, id) end
end

local function unseat(id, member)
  redis.call('HDEL', M, id)
  for _, key in ipairs(member.k) do
    if redis.call('HGET', H, key) == id then redis.call('HDEL', H, key) end
  end
  redis.call('ZREM', O, id)
  for conn in pairs(member.cs) do redis.call('ZREM', LEASES, CODE .. '|' .. id .. '|' .. conn) end
  redis.call('ZREM', LEASES, gone_entry(id))
end

local function remember_former(id, member)
  redis.call('HSET', F, id, cjson.encode({n = member.n, k = member.k}))
  redis.call('ZADD', FO, redis.call('HINCRBY', R, 'fseq', 1), id)
  local extra = redis.call('ZCARD', FO) - LIMITS.former_limit
  if extra > 0 then
    local oldest = redis.call('ZRANGE', FO, 0, extra - 1)
    redis.call('ZREMRANGEBYRANK', FO, 0, extra - 1)
    redis.call('HDEL', F, unpack(oldest))
  end
end

local function forget_former(id)
  redis.call('HDEL', F, id)
  redis.call('ZREM', FO, id)
end

-- End memberships that never connected in time (no notice).
local function drop_stale()
  local all = redis.call('HGETALL', M)
  local dropped = false
  for i = 1, #all, 2 do
    local member = cjson.decode(all[i + 1])
    if member.p == 0 and not has_conns(member) and member.cb < NOW then
      unseat(all[i], member)
      remember_former(all[i], member)
      dropped = true
    end
  end
  -- remember_former may have created :f and :fo: an idle room's keys all expire.
  if dropped then refresh_idle_expiry() end
end

-- The channels of the other processes whose sockets are in the room and
-- whose lease runs (forgetting those whose lease ran out: they died).
local function other_hosts()
  local hosts = redis.call('HGETALL', S)
  local channels = {}
  if #hosts <= 2 and (#hosts == 0 or hosts[1] == HOST) then return channels end
  for i = 1, #hosts, 2 do
    if hosts[i] ~= HOST then
      if tonumber(hosts[i + 1]) < NOW then
        redis.call('HDEL', S, hosts[i])
      else
        channels[#channels + 1] = PREFIX .. 'host:' .. hosts[i]
      end
    end
  end
  return channels
end

-- Send a recorded message (and the member list, when it changed) to the
-- other processes (channels: other_hosts(), read once for several messages).
local function publish(message, names_json, channels)
  channels = channels or other_hosts()
  if #channels == 0 then return end
  local payload = '{"r":' .. cjson.encode(CODE) .. ',"m":' .. message
  if names_json then payload = payload .. ',"p":' .. names_json end
  payload = payload .. '}'
  for _, channel in ipairs(channels) do redis.call('PUBLISH', channel, payload) end
end

-- The text bytes of the retained history (counted once for a room
-- recorded before they were kept).
local function history_bytes()
  local bytes = redis.call('HGET', R, 'bytes')
  if bytes then return tonumber(bytes) end
  bytes = 0
  for _, raw in ipairs(redis.call('LRANGE', L, 0, -1)) do bytes = bytes + #cjson.decode(raw).text end
  return bytes
end

local function record(kind, name, text, ts, cid_key)
  local bytes = history_bytes() + #text  -- # is the byte length of the UTF-8 text
  local id = redis.call('HINCRBY', R, 'last', 1)
  local message = cjson.encode({id = id, kind = kind, name = name, text = text, ts = ts})
  local length = redis.call('RPUSH', L, message)
  if cid_key then
    redis.call('HSET', C, cid_key, id)
    redis.call('HSET', CI, id, cid_key)
  end
  -- The oldest go beyond either limit (a line over the byte limit alone too).
  while length > LIMITS.history_limit or bytes > LIMITS.history_bytes do
    local dropped = cjson.decode(redis.call('LPOP', L))
    length = length - 1
    bytes = bytes - #dropped.text
    local key = redis.call('HGET', CI, dropped.id)
    if key then
      redis.call('HDEL', C, key)
      redis.call('HDEL', CI, dropped.id)
    end
  end
  redis.call('HSET', R, 'bytes', bytes)
  return message, id
end

local function present_names()
  local ids = redis.call('ZRANGE', O, 0, -1)
  local names = {}
  for i, id in ipairs(ids) do names[i] = get_member(id).n end
  return names
end

local function end_membership(id, member)
  unseat(id, member)
  local notice = false
  if member.p == 1 then notice = record('leave', member.n, '', ARGV[6]) end
  -- Members that never connected keep no room alive: idle from now.
  if member.p == 1 and redis.call('ZCARD', O) == 0 then set_idle(NOW) end
  return notice
end

local function history(last_id, count)
  local last = tonumber(redis.call('HGET', R, 'last') or '0')
  local size = redis.call('LLEN', L)
  if last_id < 0 then
    if count <= 0 then return {}, 0 end
    return redis.call('LRANGE', L, -count, -1), 0
  end
  local oldest = last - size + 1
  local truncated = 0
  if last_id + 1 < oldest and last_id < last then truncated = 1 end
  local start = last_id + 1 - oldest
  if start < 0 then start = 0 end
  if start >= size then return {}, truncated end
  return redis.call('LRANGE', L, start, -1), truncated
end

local function reply(...)
  return {...}
end

-- operations -----------------------------------------------------------------

local ops = {}

function ops.ping()
  return 1
end

-- The seconds until the first of an address's rooms expires (idle_ttl
-- when every one is busy).
local function soonest_expiry(mine)
  local first = redis.call('ZRANGE', mine, 0, 0, 'WITHSCORES')[2]
  if first == 'inf' then return LIMITS.idle_ttl end
  return tonumber(first) - NOW
end

-- ARGV: member_id, name, keys JSON, connect_by, the creator's address key
function ops.create_room()
  local address = ARGV[10]
  local mine = address_rooms(address)
  -- Entries whose deadline passed stand for expired rooms.
  redis.call('ZREMRANGEBYSCORE', mine, '-inf', NOW)
  if redis.call('ZCARD', mine) >= LIMITS.rooms_per_address then
    return {'too_many_rooms', tostring(soonest_expiry(mine))}
  end
  redis.call('ZREMRANGEBYSCORE', ROOMS, '-inf', NOW)
  if redis.call('ZCARD', ROOMS) >= LIMITS.max_rooms then return {'server_full'} end
  if live_room() then return {'code_taken'} end
  delete_room()
  redis.call('HSET', R, 'last', 0, 'seq', 0, 'idle', '', 'bytes', 0, 'cr', address)
  seat(ARGV[6], ARGV[7], cjson.decode(ARGV[8]), tonumber(ARGV[9]))
  set_idle(NOW)  -- until a member connects
  return {'created'}
end

-- ARGV: member_id, name, keys JSON, connect_by
function ops.add_member()
  local idle = live_room()
  if not idle then return 'no_room' end
  drop_stale()
  local id, keys, connect_by = ARGV[6], cjson.decode(ARGV[8]), tonumber(ARGV[9])
  if redis.call('HEXISTS', M, id) == 1 then return 'already' end
  for _, key in ipairs(keys) do
    if redis.call('HEXISTS', H, key) == 1 then return 'name_taken' end
  end
  if redis.call('HLEN', M) >= LIMITS.max_members then return 'full' end
  forget_former(id)
  seat(id, ARGV[7], keys, connect_by)  -- a pending member keeps no idle room alive
  return 'added'
end

-- ARGV: member_id
function ops.has_membership()
  if not live_room() then return 0 end
  drop_stale()
  refresh_idle_expiry()
  if redis.call('HEXISTS', M, ARGV[6]) == 1 or redis.call('HEXISTS', F, ARGV[6]) == 1 then
    return 1
  end
  return 0
end

-- ARGV: ts, member_id, conn_id, last_id (-1: none), history_on_join, lease_until
function ops.connect()
  if not live_room() then return reply('no_room') end
  drop_stale()
  local id, conn = ARGV[7], ARGV[8]
  local member = get_member(id)
  if not member then
    local former = redis.call('HGET', F, id)
    if not former then
      refresh_idle_expiry()
      return reply('not_member')
    end
    former = cjson.decode(former)
    local free = redis.call('HLEN', M) < LIMITS.max_members
    for _, key in ipairs(former.k) do
      if redis.call('HEXISTS', H, key) == 1 then free = false end
    end
    if not free then
      refresh_idle_expiry()
      return reply('not_member')
    end
    forget_former(id)
    seat(id, former.n, former.k, NOW)
    member = get_member(id)
  end
  local lease_until = tonumber(ARGV[11])
  member.cs[conn] = lease_until
  redis.call('ZADD', LEASES, lease_until, CODE .. '|' .. id .. '|' .. conn)
  redis.call('ZREM', LEASES, gone_entry(id))
  -- From now on this process gets the room's messages (its history ends here).
  redis.call('HSET', S, HOST, lease_until)
  local notice = false
  if member.p == 0 then
    member.p = 1
    redis.call('ZADD', O, redis.call('HINCRBY', R, 'seq', 1), id)
    set_busy()
    notice = record('join', member.n, '', ARGV[6])
  end
  put_member(id, member)
  local names = cjson.encode(present_names())
  if notice then publish(notice, names) end
  local messages, truncated = history(tonumber(ARGV[9]), tonumber(ARGV[10]))
  local last = redis.call('HGET', R, 'last')
  return reply('connected', member.n, notice, last, truncated, names, unpack(messages))
end

-- ARGV: member_id, conn_id
function ops.disconnect()
  local id, conn = ARGV[6], ARGV[7]
  redis.call('ZREM', LEASES, CODE .. '|' .. id .. '|' .. conn)
  local member = get_member(id)
  if not member or not member.cs[conn] then return false end
  member.cs[conn] = nil
  if has_conns(member) then
    put_member(id, member)
    return false
  end
  member.e = member.e + 1
  put_member(id, member)
  redis.call('ZADD', LEASES, NOW + LIMITS.leave_grace, gone_entry(id))
  return member.e
end

-- ARGV: ts, member_id, token (-1: whatever the epoch, from the sweep)
function ops.end_if_gone()
  local id, token = ARGV[7], tonumber(ARGV[8])
  if token == -1 then redis.call('ZREM', LEASES, gone_entry(id)) end
  local member = get_member(id)
  if not member or has_conns(member) then return false end
  if token ~= -1 and member.e ~= token then return false end
  local notice = end_membership(id, member)
  remember_former(id, member)
  refresh_idle_expiry()
  local names = cjson.encode(present_names())
  if notice then publish(notice, names) end
  return reply(notice, names)
end

-- ARGV: ts, member_id
function ops.leave()
  if not live_room() then return false end
  local id = ARGV[7]
  forget_former(id)
  local member = get_member(id)
  if not member then return false end
  local notice = end_membership(id, member)
  local conns = {}
  for conn in pairs(member.cs) do conns[#conns + 1] = conn end
  local names = cjson.encode(present_names())
  if notice then publish(notice, names) end
  return reply(notice, names, unpack(conns))
end

-- A chat line by a present member within its send budget (cid '' for none).
-- batch: what the lines of one call share, read once (room, hosts) and the
-- members they change, written back once at the end.
local function append_line(batch, ts, id, text, cid, rate, burst)
  if not batch.live then return reply('not_member') end
  local member = batch.members[id]
  if member == nil then
    member = get_member(id) or false
    batch.members[id] = member
  end
  if not member or member.p == 0 then return reply('not_member') end
  local cid_key = false
  if cid ~= '' then
    cid_key = id .. '|' .. cid
    local first = redis.call('HGET', C, cid_key)
    if first then return reply('duplicate', first) end
  end
  local tokens = member.st
  if tokens < 0 then tokens = burst end
  -- Time only ever refills (another host's clock may run behind, and cjson
  -- keeps 14 digits of sa): as in stores/memory.py.
  tokens = math.min(burst, tokens + math.max(0, NOW - member.sa) * rate)
  member.sa = math.max(member.sa, NOW)
  batch.changed[id] = member
  if tokens < 1 then
    member.st = tokens
    return reply('rate_limited', tostring((1 - tokens) / rate))
  end
  member.st = tokens - 1
  local message, message_id = record('chat', member.n, text, ts, cid_key)
  publish(message, nil, batch.channels)
  return reply('recorded', message_id, member.n)  -- the caller has the text and ts
end

-- ARGV: per line, now, ts, member_id, text, cid ('' for none), rate, burst:
-- the lines sent together into this room (stores/batching.py), each
-- recorded as at its own time, in order; one reply per line.
function ops.append()
  NOW = tonumber(ARGV[6])
  -- A room with a present member is busy (it never expires), and only
  -- present members send: whether it lives is the same for every line.
  local batch = {live = live_room() ~= nil, members = {}, changed = {}, channels = other_hosts()}
  local replies = {}
  for i = 6, #ARGV, 7 do
    NOW = tonumber(ARGV[i])
    replies[#replies + 1] = append_line(
      batch, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6]))
  end
  for id, member in pairs(batch.changed) do put_member(id, member) end
  return replies
end

-- The newest message id, then the names of the present members in join
-- order ({0} when the room is gone).
function ops.present()
  if not live_room() then return {0} end
  local reply = {tonumber(redis.call('HGET', R, 'last'))}
  for _, name in ipairs(present_names()) do reply[#reply + 1] = name end
  return reply
end

-- ARGV: member_id, interval
function ops.touch_typing()
  local id = ARGV[6]
  local member = get_member(id)
  if not member or member.p == 0 or NOW - member.ty < tonumber(ARGV[7]) then return false end
  member.ty = NOW
  put_member(id, member)
  return member.n
end

-- KEYS[1] is the bucket. ARGV: rate, burst, take (1 or 0)
function ops.bucket()
  local rate, burst = tonumber(ARGV[6]), tonumber(ARGV[7])
  local state = redis.call('HMGET', R, 'tokens', 'at')
  local tokens, at = burst, NOW
  if state[1] then  -- time only ever refills, as in ops.append
    at = math.max(NOW, tonumber(state[2]))
    tokens = math.min(burst, tonumber(state[1]) + (at - tonumber(state[2])) * rate)
  end
  if ARGV[8] == '0' then return tostring(tokens) end
  local wait = 0
  if tokens < 1 then wait = (1 - tokens) / rate else tokens = tokens - 1 end
  redis.call('HSET', R, 'tokens', tostring(tokens), 'at', tostring(at))
  redis.call('PEXPIRE', R, math.ceil((burst - tokens) / rate * 1000) + 1000)
  return tostring(wait)
end

-- ARGV: lease_until, then CODE|member|conn entries. Refresh this process's
-- leases that still exist, and its place in those rooms' :s (which a
-- publication drops once the lease there ran out, as during an outage).
-- Answers the entries that are gone (detached, swept as dead): nothing
-- brings them back.
function ops.renew()
  local until_ = ARGV[6]
  local rooms, leases, gone = {}, {}, {}  -- leases: score, entry, ...: one ZADD
  for i = 7, #ARGV do
    if redis.call('ZSCORE', LEASES, ARGV[i]) then
      leases[#leases + 1] = until_
      leases[#leases + 1] = ARGV[i]
      rooms[string.match(ARGV[i], '^[^|]*')] = true
    else
      gone[#gone + 1] = ARGV[i]
    end
  end
  if #leases > 0 then redis.call('ZADD', LEASES, unpack(leases)) end
  -- A live connection keeps its room busy: these keys never expire meanwhile.
  for code in pairs(rooms) do redis.call('HSET', PREFIX .. '{' .. code .. '}:s', HOST, until_) end
  return gone
end

-- ARGV: limit. Connections whose lease ran out (their process died).
function ops.expired()
  return redis.call('ZRANGEBYSCORE', LEASES, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[6]))
end

-- ARGV: after_id, upto_id. Retained messages in (after, upto].
function ops.messages()
  local last = tonumber(redis.call('HGET', R, 'last') or '0')
  local size = redis.call('LLEN', L)
  local oldest = last - size + 1
  local from = math.max(tonumber(ARGV[6]) + 1, oldest) - oldest
  local to = math.min(tonumber(ARGV[7]), last) - oldest
  if to < from then return {} end
  return redis.call('LRANGE', L, from, to)
end

if DEADLINE then
  local clock = redis.call('TIME')
  if tonumber(clock[1]) + tonumber(clock[2]) / 1e6 > DEADLINE then return '~late' end
end
return ops[OP]()
