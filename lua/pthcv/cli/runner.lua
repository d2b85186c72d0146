-- lua/pthcv/cli/runner.lua: what every `pthcv` command shares. A command is
-- a table that declares its arguments and options; run() parses, checks and
-- converts them, answers --help, runs the command and turns its errors into
-- one line on stderr and an exit status:
--
--   local command = {
--     name = "inspect", args = "FILE", nargs = { 1, 1 },
--     summary = "one line for `pthcv --help`",
--     help = "the longer text of `pthcv inspect --help`",
--     options = { { "json", help = "one JSON object" },
--                 { "output", short = "o", kind = "string", metavar = "OUT" }, ... },
--     run = function(pos, opt) ... return status end,
--   }
--
-- A command with `raw = true` gets its arguments as they are (only a first
-- --help or -h is taken).
--
-- Option kinds (values are converted before run is called; a bad one is a
-- usage error): "flag" (the default), "string", "count" (an integer >= 1),
-- "natural" (an integer >= 0), "number", "numbers" (a,b,c), "shape"
-- (1x3x224x224), "choice" (one of `choices`). `opt` is keyed by the long
-- name with dashes (opt["num-classes"]).
--
-- Exit statuses: 0 success, 2 usage errors (M.usage_error, unknown
-- options, bad values), otherwise the command's `failure_status` (default
-- 1) for runtime errors. Messages start "pthcv: " and never show where in
-- pthcv's Lua code an error was raised (PTHCV_DEBUG=1 adds the traceback).
local M = {}

local USAGE = {}   -- metatable of usage errors

-- A usage error, to raise with error(): run() exits 2 with the message.
function M.usage_error(msg) return setmetatable({ msg = msg }, USAGE) end
function M.is_usage_error(e) return getmetatable(e) == USAGE end

local VERBATIM = {}   -- metatable of errors printed as they are

-- An error whose message is printed as it is: the user's own code failed,
-- and its file and line are what the user needs.
function M.verbatim_error(msg) return setmetatable({ msg = tostring(msg) }, VERBATIM) end

-- "pthcv: msg" on stderr (once prefixed).
function M.err(msg)
  msg = tostring(msg)
  if msg:sub(1, 7) ~= "pthcv: " then msg = "pthcv: " .. msg end
  io.stderr:write(msg, "\n")
end

-- An error message without Lua source positions ("/…/lua/pthcv/x.lua:69: ",
-- `[string "..."]:1: `), which say where pthcv failed, not what went wrong.
function M.clean(msg)
  msg = tostring(msg)
  msg = msg:gsub("[^%s:]*%.lua:%d+: ", ""):gsub('%[string "[^"]*"%]:%d+: ', "")
  msg = msg:gsub("pthcv: pthcv: ", "pthcv: ")
  return msg
end

-- ---- "did you mean" -----------------------------------------------------------
-- Edit distance (insertions, deletions, substitutions, swaps of neighbours).
local function distance(a, b)
  local prev2, prev, cur = {}, {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        cur[j] = math.min(cur[j], prev2[j - 2] + 1)
      end
    end
    prev2, prev = prev, cur
  end
  return prev[#b]
end
M.distance = distance

-- The candidates closest to `word` (a prefix of one counts as close), or nil.
function M.suggest(word, candidates)
  local best, best_d = {}, math.huge
  local limit = math.max(1, math.floor(#word / 3))
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if #word >= 3 and c:sub(1, #word) == word then d = math.min(d, 1) end
    if d <= limit then
      if d < best_d then best, best_d = { c }, d elseif d == best_d then best[#best + 1] = c end
    end
  end
  return #best > 0 and best or nil
end

local function did_you_mean(list, prefix)
  if not list then return "" end
  for i, s in ipairs(list) do list[i] = prefix .. s end
  return " (did you mean " .. table.concat(list, " or ") .. "?)"
end
M.did_you_mean = did_you_mean

-- ---- values -------------------------------------------------------------------
local function integer(v, min)
  local n = tonumber(v)
  if n and n >= min and n % 1 == 0 and n < 2 ^ 53 then return n end
end

local convert = {
  count = function(v)
    return integer(v, 1), "a positive integer"
  end,
  natural = function(v)
    return integer(v, 0), "a non-negative integer"
  end,
  number = function(v)
    local n = tonumber(v)
    return (n and n == n) and n or nil, "a number"
  end,
  numbers = function(v)
    local list = {}
    for part in (v .. ","):gmatch("([^,]*),") do
      local n = tonumber(part)
      if not n then return nil, "numbers separated by commas (a,b,c)" end
      list[#list + 1] = n
    end
    return list, "numbers separated by commas (a,b,c)"
  end,
  shape = function(v)
    if not v:match("^%d+[x%d]*$") or v:match("xx") or v:match("x$") then
      return nil, "a shape such as 1x3x224x224"
    end
    local shape = {}
    for n in v:gmatch("%d+") do
      local d = tonumber(n)
      if d < 1 then return nil, "a shape of positive sizes such as 1x3x224x224" end
      shape[#shape + 1] = d
    end
    return shape, "a shape such as 1x3x224x224"
  end,
}

local function convert_value(o, v)
  if o.kind == "string" then return v end
  if o.kind == "choice" then
    for _, c in ipairs(o.choices) do if c == v then return v end end
    error(M.usage_error(string.format("--%s takes %s, got '%s'%s", o[1], table.concat(o.choices, ", "), v,
                                      did_you_mean(M.suggest(v, o.choices), ""))), 0)
  end
  local value, what = convert[o.kind](v)
  if value == nil then error(M.usage_error(string.format("--%s takes %s, got '%s'", o[1], what, v)), 0) end
  return value
end

-- ---- parsing --------------------------------------------------------------------
local HELP = { "help", short = "h", help = "this text" }

local function option_index(command)
  local by = {}
  for _, o in ipairs(command.options or {}) do
    o.kind = o.kind or "flag"
    by["--" .. o[1]] = o
    if o.short then by["-" .. o.short] = o end
  end
  by["--help"], by["-h"] = HELP, HELP
  return by
end

local function option_names(command)
  local names = { "--help" }
  for _, o in ipairs(command.options or {}) do names[#names + 1] = "--" .. o[1] end
  return names
end

-- args -> positional list, options table; raises usage errors. Returns
-- nil, "help" when --help or -h is among the options.
function M.parse(command, args)
  if command.raw then   -- the arguments are the command's own (pthcv lua FILE ARGS...)
    if args[1] == "--help" or args[1] == "-h" then return nil, "help" end
    local n = command.nargs or { 0, 0 }
    if #args < n[1] or (n[2] and #args > n[2]) then
      error(M.usage_error(command.name .. (command.args and (" takes " .. command.args) or " takes no argument")), 0)
    end
    return args, {}
  end
  local by = option_index(command)
  local pos, opt = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    elseif a:sub(1, 1) == "-" and #a > 1 and not (command.negative_positionals and tonumber(a)) then
      local name, value = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local o = by[name]
      if not o then
        local hint = M.suggest(name, option_names(command))
        error(M.usage_error("unknown option " .. name .. " for " .. command.name .. did_you_mean(hint, "")), 0)
      end
      if o == HELP then return nil, "help" end
      if o.kind == "flag" then
        if value ~= nil then error(M.usage_error("option " .. name .. " takes no value"), 0) end
        opt[o[1]] = true
      else
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then error(M.usage_error("option " .. name .. " needs a value"), 0) end
        end
        opt[o[1]] = convert_value(o, value)
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  local n = command.nargs or { 0, 0 }
  if #pos < n[1] or (n[2] and #pos > n[2]) then
    local want = command.args and (command.name .. " takes " .. command.args) or (command.name .. " takes no argument")
    error(M.usage_error(want), 0)
  end
  return pos, opt
end

-- ---- help texts ---------------------------------------------------------------
local function synopsis(command)
  return command.synopsis or (command.name .. (command.args and (" " .. command.args) or "") .. " [options]")
end

local function wrap(text, indent)
  local out = {}
  for line in (text:gsub("\n+$", "") .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = indent .. line end
  return table.concat(out, "\n")
end

-- `pthcv COMMAND --help`
local HEAD_MAX = 26   -- wider option heads put their help on the next line

function M.help(command)
  local lines = {}
  for l in (synopsis(command) .. "\n"):gmatch("([^\n]*)\n") do
    if l:sub(1, #command.name) == command.name then
      lines[#lines + 1] = (#lines == 0 and "usage: " or "       ") .. "pthcv " .. l
    else
      lines[#lines + 1] = "             " .. l:gsub("^%s+", "")
    end
  end
  lines[#lines + 1] = ""
  if command.help or command.summary then lines[#lines + 1] = wrap(command.help or command.summary, "") end
  local rows = {}
  for _, o in ipairs(command.options or {}) do
    local head = (o.short and ("-" .. o.short .. ", ") or "") .. "--" .. o[1]
    if o.kind ~= "flag" then head = head .. " " .. (o.metavar or (o.kind == "choice" and table.concat(o.choices, "|")) or "X") end
    rows[#rows + 1] = { head, o.help or "" }
  end
  rows[#rows + 1] = { "-h, --help", "this text" }
  local w = 0
  for _, r in ipairs(rows) do if #r[1] <= HEAD_MAX then w = math.max(w, #r[1]) end end
  local indent = "\n  " .. string.rep(" ", w + 2)
  lines[#lines + 1] = ""
  lines[#lines + 1] = "options:"
  for _, r in ipairs(rows) do
    local text = r[2]:gsub("\n", indent)
    if #r[1] > w then
      lines[#lines + 1] = "  " .. r[1]
      lines[#lines + 1] = "  " .. string.rep(" ", w + 2) .. text
    else
      lines[#lines + 1] = "  " .. r[1] .. string.rep(" ", w - #r[1] + 2) .. text
    end
  end
  if command.footer then lines[#lines + 1] = ""; lines[#lines + 1] = wrap(command.footer, "") end
  return table.concat(lines, "\n") .. "\n"
end

-- The command's entry in `pthcv --help`.
function M.summary(command)
  return "  " .. synopsis(command):gsub("\n", "\n  ") .. "\n" .. wrap(command.summary or "", "      ") .. "\n"
end

-- ---- running --------------------------------------------------------------------
local function traceback(e)
  if M.is_usage_error(e) then return e end
  if getmetatable(e) == VERBATIM then return e.msg end
  if os.getenv("PTHCV_DEBUG") == "1" then return debug.traceback(tostring(e), 2) end
  return M.clean(e)
end

-- Runs a command on its arguments; returns the exit status.
function M.run(command, args)
  local ok, pos, opt = xpcall(function() return M.parse(command, args) end, traceback)
  if ok and pos == nil then
    io.stdout:write(M.help(command))
    return 0
  end
  local status
  if ok then
    local ok2, r = xpcall(function() return command.run(pos, opt) end, traceback)
    if ok2 then return r or 0 end
    pos = r
  else
    status = 2
  end
  if M.is_usage_error(pos) then
    M.err(pos.msg .. " (see pthcv " .. command.name .. " --help)")
    return 2
  end
  M.err(pos)
  return status or command.failure_status or 1
end

return M
