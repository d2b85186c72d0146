-- lua/pthcv/nn/repr.lua: Python's repr of the values torch's extra_repr
-- prints (floats, tuples, booleans, None), and torch's repr of a module
-- tree, so print(module) reads as torch's.
local M = {}

-- Python's repr(float): the shortest text that reads back the same double,
-- in fixed notation for exponents -4..15, else d.ddde-XX; "1.0", not "1".
function M.float(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" elseif x == -math.huge then return "-inf" end
  local s
  for p = 1, 17 do
    s = string.format("%." .. p .. "e", x)
    if tonumber(s) == x then break end
  end
  -- s: [-]d.ddde[+-]XX
  local sign, int, frac, exp = s:match("^(%-?)(%d)%.?(%d*)e([%+%-]%d+)$")
  if not sign then return tostring(x) end
  frac = frac:gsub("0+$", "")
  exp = tonumber(exp)
  local digits = int .. frac
  if exp >= -4 and exp < 16 then
    local point = exp + 1 -- digits before the decimal point
    local whole, rest
    if point <= 0 then
      whole, rest = "0", string.rep("0", -point) .. digits
    elseif point >= #digits then
      whole, rest = digits .. string.rep("0", point - #digits), ""
    else
      whole, rest = digits:sub(1, point), digits:sub(point + 1)
    end
    if rest == "" then rest = "0" end
    return sign .. whole .. "." .. rest
  end
  local m = int
  if frac ~= "" then m = m .. "." .. frac end
  return string.format("%s%se%s%02d", sign, m, exp < 0 and "-" or "+", math.abs(exp))
end

-- A value as Python would print it: ints bare, floats as above, booleans
-- True/False, nil as None, tables as tuples "(3, 3)" / "(3,)".
function M.value(v, is_float)
  local t = type(v)
  if v == nil then return "None" end
  if t == "boolean" then return v and "True" or "False" end
  if t == "number" then
    if is_float then return M.float(v) end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return M.float(v)
  end
  if t == "string" then return v end
  if t == "table" then
    local parts = {}
    for i = 1, #v do parts[i] = M.value(v[i], is_float) end
    if #parts == 1 then return "(" .. parts[1] .. ",)" end
    return "(" .. table.concat(parts, ", ") .. ")"
  end
  return tostring(v)
end

-- Python's repr of a str: 'text'.
function M.str(s) return "'" .. s .. "'" end

local function add_indent(s, n)
  local pad = string.rep(" ", n)
  return (s:gsub("\n", "\n" .. pad))
end

-- torch's repr of module m: "Name(extra)" or "Name(\n  (child): ...\n)".
function M.module(m)
  local extra = m:extra_repr()
  local extra_lines = {}
  if extra ~= "" then
    for line in (extra .. "\n"):gmatch("(.-)\n") do extra_lines[#extra_lines + 1] = line end
  end
  local lines = {}
  for _, l in ipairs(extra_lines) do lines[#lines + 1] = l end
  local nchild = 0
  for _, kv in ipairs(m:named_children()) do
    nchild = nchild + 1
    lines[#lines + 1] = "(" .. kv[1] .. "): " .. add_indent(kv[2]:repr(), 2)
  end
  local s = m:repr_name() .. "("
  if #lines > 0 then
    if #extra_lines == 1 and nchild == 0 then
      s = s .. extra_lines[1]
    else
      s = s .. "\n  " .. table.concat(lines, "\n  ") .. "\n"
    end
  end
  return s .. ")"
end

return M
