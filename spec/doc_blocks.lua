-- spec/doc_blocks.lua: reads the code blocks of a Markdown file and what
-- they state about their output, for spec/doc_spec.lua (the doc tests).
-- The conventions are written up in docs/writing-docs.md; in short:
--
--   ```lua      run by `pthcv lua` (global pthcv); a `--> text` comment
--               states the output of the code above it (back to the
--               previous `-->`), one `-->` line per printed line
--   ```sh       run by bash -e; every command must succeed
--   ```console  `$ command` lines, each followed by its output (stdout and
--               stderr) and, when it is not 0, a last line `[exit N]`
--   ```repl     a `pthcv repl` session: `pthcv> ` and `>> ` lines are typed,
--               the other lines are what the session prints
--   anything else (text, python, cpp, json, ...) is not run; a block
--   without a language is an error (say what it is)
--
-- In stated output, runs of blanks compare equal, ends of lines are
-- trimmed, `...` within a line matches any text and a line that is only
-- `...` matches any number of lines.
--
-- An HTML comment right before a block (blank lines between allowed)
-- directs the test: `<!-- doc-test: skip (why) -->` (reported as pending
-- with that reason), `<!-- doc-test: continues -->` (the block runs after
-- the previous block of its kind in the file, in the same Lua state or shell;
-- a `return` ending that block is left out), `<!-- doc-test: file net.lua -->`
-- (the block is also the reader's file net.lua, which the blocks after it
-- in the same Markdown file find in their folder). Directives combine with
-- `;`.
local M = {}

M.run_langs = { lua = "lua", sh = "sh", shell = "sh", bash = "sh", console = "console", repl = "repl" }

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end
M.trim = trim

-- The directive of an HTML comment line, or nil when the line is none.
local function parse_directive(line, where)
  local body = line:match("^%s*<!%-%-%s*doc%-test:%s*(.-)%s*%-%->%s*$")
  if not body then
    if line:match("^%s*<!%-%-%s*doc%-test") then
      return nil, where .. ": a doc-test comment must be one line: <!-- doc-test: skip (why) --> or <!-- doc-test: continues -->"
    end
    return nil
  end
  -- the parts between `;`s outside parentheses
  local parts, depth, start = {}, 0, 1
  for i = 1, #body + 1 do
    local c = body:sub(i, i)
    if c == "(" then depth = depth + 1 elseif c == ")" then depth = depth - 1 end
    if (c == ";" and depth == 0) or i > #body then
      parts[#parts + 1] = trim(body:sub(start, i - 1))
      start = i + 1
    end
  end
  local d = {}
  for _, part in ipairs(parts) do
    if part == "continues" then
      d.continues = true
    elseif part:match("^file%s") then
      d.file = part:match("^file%s+([%w_%.%-]+)$")
      if not d.file then return nil, where .. ": `file` names one file: <!-- doc-test: file net.lua -->" end
    elseif part:match("^skip") then
      local why = part:match("^skip%s*%((.+)%)$") or part:match("^skip%s*:%s*(.+)$")
      if not why or trim(why) == "" then
        return nil, where .. ": `skip` needs its reason: <!-- doc-test: skip (needs a camera) -->"
      end
      d.skip = trim(why)
    elseif part ~= "" then
      return nil, where .. ": unknown doc-test directive `" .. part .. "` (known: skip (why), continues, file NAME)"
    end
  end
  return d
end

-- Every fenced code block of `text` (the contents of `file`):
-- {file, line = the opening fence's line, first = its first content line,
--  lang, lines = {...} (indentation of the fence removed), directive = {...}
--  or nil, error = a problem of the Markdown itself or nil}.
function M.parse(text, file)
  local blocks, lines = {}, {}
  for l in (text:gsub("\r\n", "\n") .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
    lines[#lines + 1] = l
  end
  local i = 1
  while i <= #lines do
    local indent, fence, info = lines[i]:match("^( *)(```+)%s*(.-)%s*$")
    if not fence then indent, fence, info = lines[i]:match("^( *)(~~~+)%s*(.-)%s*$") end
    if fence then
      local b = { file = file, line = i, first = i + 1, lang = info:match("^(%S*)"), lines = {} }
      local j = i + 1
      while j <= #lines do
        local l = lines[j]
        local close = l:match("^ *(" .. fence:sub(1, 1):rep(3) .. "+)%s*$")
        if close and #close >= #fence then break end
        -- a fence indented in a list item: its lines carry that indentation
        if l:sub(1, #indent) == indent then l = l:sub(#indent + 1) else l = l:gsub("^ +", "") end
        b.lines[#b.lines + 1] = l
        j = j + 1
      end
      if j > #lines then b.error = file .. ":" .. i .. ": the code block is never closed" end
      -- the directive: the closest non-blank line above, when it is one
      local k = i - 1
      while k >= 1 and lines[k]:match("^%s*$") do k = k - 1 end
      if k >= 1 then
        local d, err = parse_directive(lines[k], file .. ":" .. k)
        b.directive = d
        b.error = b.error or err
      end
      if b.lang == "" then
        b.error = b.error or (file .. ":" .. i .. ": a code block without a language: name it (lua, sh, console: "
                              .. "run by spec/doc_spec.lua; text, python, cpp, json, ...: not run)")
      end
      blocks[#blocks + 1] = b
      i = j + 1
    else
      i = i + 1
    end
  end
  -- chains: a block that continues runs after the previous one of its kind
  local prev = {}
  for _, b in ipairs(blocks) do
    b.kind = M.run_langs[b.lang]
    if b.kind then
      if b.directive and b.directive.continues then
        b.previous = prev[b.kind]
        if not b.previous then
          b.error = b.error or (file .. ":" .. b.line .. ": `continues`, but no " .. b.kind
                                .. " block comes before it")
        end
      end
      prev[b.kind] = b
    end
  end
  return blocks
end

-- The blocks a block runs after (its chain), first to last, itself included.
function M.chain(b)
  local c = {}
  while b do table.insert(c, 1, b); b = b.previous end
  return c
end

-- ---- stated output ---------------------------------------------------------

-- A Lua block's statements of output: a list of {line = the doc line the
-- range ends at, from = the first doc line of its range, expected = {{text,
-- line}, ...}}. `code --> text` ends a range at that line; `--> text` lines
-- right below it (or below other `-->` lines) continue the same statement;
-- a `-->` line below anything else states the output of the code above.
function M.lua_expectations(b)
  local list, last_end = {}, b.first - 1
  local current, current_last
  for k, l in ipairs(b.lines) do
    local n = b.first + k - 1
    local code, said = l:match("^(.-)%-%->%s?(.*)$")
    if code and not (code == "" or code:match("%s$")) then code = nil end -- `x-->y` is no comment
    if code then
      said = said:gsub("%s+$", "")
      if trim(code) == "" and current and current_last == n - 1 then
        current.expected[#current.expected + 1] = { text = said, line = n }
      else
        current = { from = last_end + 1, line = n, expected = { { text = said, line = n } } }
        list[#list + 1] = current
        last_end = n
      end
      current_last = n
    end
  end
  return list
end

-- A console block's commands: {{line, command, expected = {{text, line}...},
-- status}, ...}. A command ending in `\` continues on the next line.
function M.console_commands(b)
  local cmds, cur = {}, nil
  local k = 1
  while k <= #b.lines do
    local l, n = b.lines[k], b.first + k - 1
    local cmd = l:match("^%$ (.*)$") or (l == "$" and "")
    if cmd then
      cur = { line = n, command = cmd, expected = {}, status = 0 }
      while cur.command:match("\\$") and k < #b.lines do
        k = k + 1
        cur.command = cur.command .. "\n" .. b.lines[k]
      end
      cmds[#cmds + 1] = cur
    elseif cur then
      cur.expected[#cur.expected + 1] = { text = l, line = n }
    else
      return nil, b.file .. ":" .. n .. ": a console block starts with a `$ command` line"
    end
    k = k + 1
  end
  for _, c in ipairs(cmds) do
    local e = c.expected
    while #e > 0 and trim(e[#e].text) == "" do e[#e] = nil end
    local st = #e > 0 and trim(e[#e].text):match("^%[exit (%d+)%]$")
    if st then c.status = tonumber(st); e[#e] = nil end
  end
  if #cmds == 0 then return nil, b.file .. ":" .. b.line .. ": a console block without a `$ command` line" end
  return cmds
end

-- A repl block's input (the typed lines, prompts removed) and its
-- stated output ({{text, line}, ...}).
function M.repl_session(b)
  local input, expected = {}, {}
  for k, l in ipairs(b.lines) do
    local typed = l:match("^pthcv> (.*)$") or l:match("^>> (.*)$")
    if typed then input[#input + 1] = typed
    else expected[#expected + 1] = { text = l, line = b.first + k - 1 } end
  end
  return table.concat(input, "\n") .. "\n", expected
end

-- ---- matching ----------------------------------------------------------------

local function norm(s) return trim((s:gsub("[ \t]+", " "))) end

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- A Lua pattern for one stated line: `...` matches any text.
local function line_pattern(text)
  local s, parts, i = norm(text), {}, 1
  while true do
    local a, e = s:find("...", i, true)
    if not a then parts[#parts + 1] = escape(s:sub(i)) break end
    parts[#parts + 1] = escape(s:sub(i, a - 1))
    parts[#parts + 1] = ".-"
    i = e + 1
  end
  return "^" .. table.concat(parts) .. "$"
end

-- The lines of an output, its trailing blank lines removed.
function M.split_lines(s)
  local out = {}
  for l in (s:gsub("\r", "") .. (s:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do out[#out + 1] = l end
  while #out > 0 and trim(out[#out]) == "" do out[#out] = nil end
  return out
end

-- Whether expected[ei..] matches actual[ai..] (and, with `prefix`, only a
-- first part of actual).
local function match_from(exp, act, ei, ai, prefix, memo)
  local key = ei * 100003 + ai
  if memo[key] ~= nil then return memo[key] end
  local r
  if ei > #exp then
    r = prefix or ai > #act
  elseif norm(exp[ei].text) == "..." then
    r = false
    for k = ai, #act + 1 do
      if match_from(exp, act, ei + 1, k, prefix, memo) then r = true break end
    end
  else
    r = ai <= #act and norm(act[ai]):match(exp[ei].pattern) ~= nil
        and match_from(exp, act, ei + 1, ai + 1, prefix, memo)
  end
  memo[key] = r
  return r
end

-- nil when the output `actual` (a string) is what `expected` ({{text,
-- line}, ...}) states, else a message saying where they part.
function M.compare(expected, actual)
  local act = M.split_lines(actual)
  local exp = {}
  for i, e in ipairs(expected) do exp[i] = { text = e.text, line = e.line, pattern = line_pattern(e.text) } end
  while #exp > 0 and trim(exp[#exp].text) == "" do exp[#exp] = nil end
  if match_from(exp, act, 1, 1, false, {}) then return nil end
  -- the longest first part of the statement that still matches
  local k = 0
  while k < #exp do
    local part = {}
    for i = 1, k + 1 do part[i] = exp[i] end
    if not match_from(part, act, 1, 1, true, {}) then break end
    k = k + 1
  end
  -- the output from where the stated lines that matched end
  local from = 1
  if k > 0 then
    local part = {}
    for i = 1, k do part[i] = exp[i] end
    for m = 0, #act do
      local upto = {}
      for i = 1, m do upto[i] = act[i] end
      if match_from(part, upto, 1, 1, false, {}) then from = math.max(1, m - 2) break end
    end
  end
  local shown = {}
  if from > 1 then shown[1] = "  | ... (" .. (from - 1) .. " lines)" end
  for i = from, math.min(#act, from + 29) do shown[#shown + 1] = "  | " .. act[i] end
  if #act > from + 29 then shown[#shown + 1] = "  | ... (" .. (#act - from - 29) .. " more lines)" end
  if #act == 0 then shown[1] = "  (no output)" end
  local why
  if k < #exp then
    why = string.format("line %d states `%s`, which the output does not have there", exp[k + 1].line, exp[k + 1].text)
  else
    why = "the output goes on after what the block states (end the statement with a `...` line to leave it open)"
  end
  return why .. "; the output:\n" .. table.concat(shown, "\n")
end

return M
