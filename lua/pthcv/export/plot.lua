-- lua/pthcv/export/plot.lua: bar charts drawn by gnuplot (`pthcv bench
-- --profile --plot times.png`).
--
--   local plot = require "pthcv.export.plot"
--   plot.bars({{"layer1.0", 1.25}, {"fc", 0.18}}, "times.png", {title = "resnet18", unit = "ms"})
--   -> {path = "times.png", rows = 2} or, without gnuplot, {path = "times.gp", script = true}
--
-- One horizontal bar a row, in the given order from the top, each labelled
-- with its name and value; .png (pngcairo) or .svg by the extension. When
-- gnuplot is not installed, the script and its data are written beside the
-- picture (times.gp, times.dat) for another machine to draw.
--
-- exclusive(rows): a profile's inclusive times per module path (the
-- profiler's rows: {path, type, ms}) as each module's own time: minus the
-- time of the profiled modules inside it, so that the bars add up to the
-- pass. Modules whose own time is below 0.2% of the pass are left out.
local M = {}

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

function M.have_gnuplot()
  local r = os.execute("command -v gnuplot >/dev/null 2>&1")
  return r == 0 or r == true
end

-- gnuplot's string quoting (single quotes double inside)
local function gp_string(s) return "'" .. s:gsub("'", "''") .. "'" end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function M.bars(rows, path, o)
  o = o or {}
  local ext = path:lower():match("%.(%w+)$")
  if ext ~= "png" and ext ~= "svg" then
    error("pthcv: plot: " .. path .. ": the extension picks the picture, .png or .svg", 0)
  end
  local base = path:gsub("%.%w+$", "")
  local data = {}
  local longest = 0
  for i, r in ipairs(rows) do
    data[i] = string.format("%d\t%s\t%.6g", i - 1, (r[1]:gsub("[\t\n]", " ")), r[2])
    longest = math.max(longest, #r[1])
  end
  local height = 110 + 22 * #rows
  local width = 700 + 7 * longest
  local unit = o.unit or ""
  local term = ext == "png" and string.format("pngcairo size %d,%d font 'Helvetica,10'", width, height)
                              or string.format("svg size %d,%d font 'Helvetica,10'", width, height)
  local script = table.concat({
    "set terminal " .. term .. " noenhanced",
    "set datafile separator '\\t'",
    "set output " .. gp_string(path),
    "set title " .. gp_string(o.title or ""),
    "set xlabel " .. gp_string(o.xlabel or unit),
    "set style fill solid 0.85 border -1",
    "set grid xtics lc rgb '#dddddd'",
    "set yrange [" .. (#rows - 0.3) .. ":-0.7]",
    "set xrange [0:*]",
    "set offsets 0, graph 0.12, 0, 0",
    "unset key",
    "set ytics nomirror scale 0",
    "plot DATA using 3:1:(0):3:($1-0.38):($1+0.38):ytic(2) with boxxyerror lc rgb '#4a7bd0', \\",
    "     DATA using 3:1:(sprintf(' %.3g " .. unit .. "', $3)) with labels left font ',9'",
  }, "\n") .. "\n"
  local dat = base .. ".dat"
  if not M.have_gnuplot() then
    write(dat, table.concat(data, "\n") .. "\n")
    write(base .. ".gp", "DATA = " .. gp_string(dat) .. "\n" .. script)
    return { path = base .. ".gp", data = dat, script = true, rows = #rows }
  end
  local tmp = path .. ".tmp"
  write(tmp .. ".dat", table.concat(data, "\n") .. "\n")
  write(tmp .. ".gp", "DATA = " .. gp_string(tmp .. ".dat") .. "\n" .. script)
  local p = io.popen("gnuplot " .. shell_quote(tmp .. ".gp") .. " 2>&1")
  local msg = p:read("*a")
  local ok = p:close()
  os.remove(tmp .. ".dat")
  os.remove(tmp .. ".gp")
  if not ok or msg:match("error") then error("pthcv: plot: gnuplot failed: " .. msg, 0) end
  return { path = path, rows = #rows }
end

-- rows: {{path = "layer1.0", ms = inclusive ms per pass}, ...} in tree order
-- (the root is "(model)"); returns {{label, own ms}, ...}.
function M.exclusive(rows, total)
  local by = {}
  for _, r in ipairs(rows) do by[r.path] = r end
  local own = {}
  for _, r in ipairs(rows) do own[r.path] = r.ms end
  for _, r in ipairs(rows) do
    if r.path ~= "(model)" then
      -- the nearest profiled ancestor ("layer1.0.downsample.0+bn" -> "layer1.0.downsample")
      local parent = r.path:gsub("%+.*$", ""):match("^(.*)%.[^.]+$")
      while parent and not by[parent] do parent = parent:match("^(.*)%.[^.]+$") end
      parent = parent or "(model)"
      if own[parent] then own[parent] = own[parent] - r.ms end
    end
  end
  total = total or (by["(model)"] and by["(model)"].ms) or 0
  local out = {}
  for _, r in ipairs(rows) do
    local v = own[r.path]
    if v > 0.002 * total then out[#out + 1] = { r.path == "(model)" and "(model, own)" or r.path, v } end
  end
  return out
end

return M
