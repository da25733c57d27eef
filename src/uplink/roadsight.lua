#!lua name=roadsight
-- Ordered, idempotent append of one camera stream to the central Redis (see function.rs).
--
-- Loaded and upgraded by roadsightd at connect (`FUNCTION LOAD REPLACE`); Redis persists and
-- replicates it with the data set. Bump VERSION with every change, and LIBRARY_VERSION in
-- function.rs with it: a daemon never replaces a newer library, so a newer version must keep
-- the calls and replies of the older ones (older daemons keep calling it).
--
-- IDs are compared as decimal strings (length, then digits), exact over the whole u64 range.

local VERSION = 3
local U64_MAX = '18446744073709551615'

-- A decimal u64 without leading zeros, or nil.
local function u64(s)
    if not s or not s:match('^%d+$') then return nil end
    s = s:gsub('^0+', '')
    if s == '' then s = '0' end
    if #s > #U64_MAX or (#s == #U64_MAX and s > U64_MAX) then return nil end
    return s
end

-- "ms-seq" (or a bare "ms", read as ms-0) as {ms, seq}, or nil.
local function parse_id(s)
    if type(s) ~= 'string' then return nil end
    local ms, seq = s:match('^(%d+)-(%d+)$')
    if not ms then ms, seq = s:match('^(%d+)$'), '0' end
    ms, seq = u64(ms), u64(seq)
    if not ms or not seq then return nil end
    return { ms, seq }
end

local function cmp_u64(a, b)
    if #a ~= #b then return #a < #b and -1 or 1 end
    if a == b then return 0 end
    return a < b and -1 or 1
end

local function cmp_id(a, b)
    local c = cmp_u64(a[1], b[1])
    if c ~= 0 then return c end
    return cmp_u64(a[2], b[2])
end

local function fmt_id(id) return id[1] .. '-' .. id[2] end

local function fail(name, msg)
    return redis.error_reply('ERR ' .. name .. ': ' .. msg)
end

-- Whether `id`, absent from the stream, may have been there and been removed since: at or
-- below the highest XDELed ID, or older than the oldest entry left (trimmed from the front),
-- or the stream is empty.
local function maybe_removed(key, id)
    local info = redis.call('XINFO', 'STREAM', key)
    local max_deleted, first, length
    for i = 1, #info, 2 do
        if info[i] == 'max-deleted-entry-id' then max_deleted = parse_id(info[i + 1])
        elseif info[i] == 'first-entry' and type(info[i + 1]) == 'table' then first = parse_id(info[i + 1][1])
        elseif info[i] == 'length' then length = info[i + 1]
        end
    end
    if length == 0 or not first then return true end
    if max_deleted and cmp_id(id, max_deleted) <= 0 then return true end
    return cmp_id(id, first) < 0
end

-- The stream's last-generated-id (kept through XDEL and XTRIM), or nil when the key is absent.
local function last_generated(key)
    if redis.call('EXISTS', key) == 0 then return nil end
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
        if info[i] == 'last-generated-id' then return parse_id(info[i + 1]) end
    end
    error('XINFO STREAM gave no last-generated-id')
end

local function version()
    return VERSION
end

local function last(keys)
    if #keys ~= 1 then return fail('roadsight_last', 'expects exactly one key') end
    local id = last_generated(keys[1])
    if not id then return nil end
    return fmt_id(id)
end

-- KEYS[1] = stream; ARGV = prev, mode, then per entry: id, n, n field/value pairs.
local function append(keys, args)
    local name = 'roadsight_append'
    if #keys ~= 1 then return fail(name, 'expects exactly one key') end
    if #args < 2 then return fail(name, 'expects prev and mode arguments') end
    local prev = parse_id(args[1])
    if not prev then return fail(name, 'prev "' .. tostring(args[1]) .. '" is not a stream ID') end
    local create, accept_gap = false, false
    for word in args[2]:gmatch('[^,%s]+') do
        if word == 'create' then create = true
        elseif word == 'gap' then accept_gap = true
        else return fail(name, 'unknown mode "' .. word .. '" (expected create, gap)') end
    end

    -- Validate every entry before writing any: a function is not rolled back on error.
    local entries, i = {}, 3
    while i <= #args do
        local id = parse_id(args[i])
        if not id then return fail(name, 'entry ID "' .. args[i] .. '" is not a stream ID') end
        local n = args[i + 1] and args[i + 1]:match('^%d+$') and tonumber(args[i + 1])
        if not n or n < 1 then
            return fail(name, 'entry ' .. args[i] .. ' needs a field count of at least 1')
        end
        if i + 1 + 2 * n > #args then
            return fail(name, 'entry ' .. args[i] .. ' has fewer than ' .. n .. ' field/value pairs')
        end
        if #entries > 0 and cmp_id(id, entries[#entries].id) <= 0 then
            return fail(name, 'entry IDs must increase (' .. args[i] .. ' after '
                .. fmt_id(entries[#entries].id) .. ')')
        end
        -- The caller's own text goes to XADD (no re-formatting); a bare "ms" is spelt out.
        local raw = args[i]:find('-', 1, true) and args[i] or fmt_id(id)
        entries[#entries + 1] = { id = id, raw = raw, first = i + 2, last = i + 1 + 2 * n }
        i = i + 2 + 2 * n
    end

    local key = keys[1]
    local upstream = last_generated(key)
    local existed = upstream ~= nil
    if not existed then
        -- A deleted upstream stream is reported, never silently recreated.
        if not create then return { 'missing' } end
        upstream = { '0', '0' }
    end
    if cmp_id(upstream, prev) < 0 and not accept_gap then
        return { 'gap', fmt_id(upstream) }
    end
    -- An ID above `prev` (not yet confirmed to the caller) but at or below upstream's last is
    -- a duplicate if upstream holds it (a retry after a lost reply) or may have held it and
    -- removed it since (XDEL, trimming). Otherwise another writer or a clock ahead took that
    -- ID range, and skipping would lose the entry: refuse, write nothing.
    -- The usual case, every entry above upstream's last, skips the check.
    if existed and #entries > 0 and cmp_id(entries[1].id, upstream) <= 0 then
        for _, e in ipairs(entries) do
            if cmp_id(e.id, prev) > 0 and cmp_id(e.id, upstream) <= 0 then
                local id = fmt_id(e.id)
                if #redis.call('XRANGE', key, id, id) == 0 and not maybe_removed(key, e.id) then
                    return { 'conflict', fmt_id(upstream), id }
                end
            end
        end
    end

    local applied, duplicates = 0, 0
    for _, e in ipairs(entries) do
        if cmp_id(e.id, upstream) <= 0 then
            duplicates = duplicates + 1
        else
            if existed then
                redis.call('XADD', key, 'NOMKSTREAM', e.raw, unpack(args, e.first, e.last))
            else
                redis.call('XADD', key, e.raw, unpack(args, e.first, e.last))
                existed = true
            end
            upstream = e.id
            applied = applied + 1
        end
    end
    return { 'ok', applied, duplicates, fmt_id(upstream) }
end

redis.register_function {
    function_name = 'roadsight_version', callback = version, flags = { 'no-writes' },
    description = 'Version of the roadsight library',
}
redis.register_function {
    function_name = 'roadsight_last', callback = last, flags = { 'no-writes' },
    description = 'Last generated ID of a stream, or nil when the key is absent',
}
redis.register_function {
    function_name = 'roadsight_append', callback = append,
    description = 'Append entries with their IDs to one stream, skipping IDs at or below its last',
}
