-- doc_spec: the doc tests. Every lua, sh and console block of README.md and
-- docs/*.md runs, and what it states about its output is checked (the
-- conventions: docs/writing-docs.md, spec/doc_blocks.lua). A failure names
-- the file, the block's line and what differed.
--
-- Each block runs in a fresh folder, build/doc-test/<file>-<line>/, as a
-- reader would run it in a checkout after `make`: bin, lua, build, csrc,
-- include, examples, spec, tools, docs, Makefile, pthcv.lua and the
-- rockspec are links to the checkout, `pthcv` is on PATH (as after the
-- rock's install), the specs' LUA_PATH and PTHCV_* settings are not. The
-- folder is removed when the block passes and kept when it fails. Lua
-- blocks run through `pthcv lua` (spec/doc_lua_runner.lua), shell blocks
-- through bash.
--
-- Blocks name files the reader has. They exist in the block's folder,
-- as links made below (`provided`); a block that names one that cannot be
-- made here is pending, with the reason.
local support = require "support"
local blocks = require "doc_blocks"

local root = support.root
local q = support.shell_quote

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function has_torchvision()
  if support._torchvision == nil then
    support._torchvision = support.run("/usr/bin/python3 -c 'import torch, torchvision'") == 0
  end
  return support._torchvision
end

local function fixture(path)
  return function() return root .. "/" .. path end
end

-- A file of the detection fixtures, or nil and why it is missing.
local function detection_fixture(name)
  local dir = os.getenv("PTHCV_DETECTION")
  if not dir or dir == "" then
    return nil, name .. ": the detection fixtures (PTHCV_DETECTION) were not written (tools/run-specs writes them when torch and torchvision are installed, unless PTHCV_DETECTION=skip)"
  end
  return dir .. "/" .. name
end

-- The reader's files: name in the docs -> how it is provided.
local provided = {
  -- a photo: the bundled picture, examples/demo.jpg (examples/make_demo_image.py)
  ["cat.jpg"] = fixture("examples/demo.jpg"),
  -- torchvision's resnet18 state_dict: the one `make demo` classifies with,
  -- build/demo/resnet18.pth, written by examples/make_demo_model.py (seeded
  -- random weights: the docs' class names and probabilities are its)
  ["resnet18.pth"] = function()
    local path = root .. "/build/demo/resnet18.pth"
    if exists(path) then return path end
    if not has_torchvision() then
      return nil, "resnet18.pth: build/demo/resnet18.pth is missing (make demo writes it) and torch/torchvision "
                  .. "are not installed to write it with examples/make_demo_model.py"
    end
    os.execute("mkdir -p " .. q(root .. "/build/demo"))
    local code, _, err = support.run("/usr/bin/python3 " .. q(root .. "/examples/make_demo_model.py") .. " " .. q(path))
    assert(code == 0, "examples/make_demo_model.py failed: " .. err)
    return path
  end,
  -- a file someone sent: spec/fixtures/evil_posix_system_p2.pth
  -- (spec/fixtures/make_evil.py: its pickle calls posix.system)
  ["suspicious.pth"] = fixture("spec/fixtures/evil_posix_system_p2.pth"),
  -- the docs' small examples, written by spec/fixtures/make_doc_fixtures.py
  -- with seeded weights (its expected.txt: what torch computes from them):
  -- docs/nn.md's Sequential as a state_dict and as torch.save(model)
  ["seq.pth"] = fixture("spec/fixtures/doc/seq.pth"),
  ["seq_model.pth"] = fixture("spec/fixtures/doc/seq_model.pth"),
  -- an input, float32 [1, 3, 32, 32]
  ["x.npy"] = fixture("spec/fixtures/doc/x.npy"),
  -- docs/custom-layers.md's Net: its state_dict, a training checkpoint of
  -- it under other names (backbone.*, fc.*), torch.save(model) with the
  -- classes mypkg.blocks.Block and mypkg.net.Net
  ["net.pth"] = fixture("spec/fixtures/doc/net.pth"),
  ["ckpt.pth"] = fixture("spec/fixtures/doc/ckpt.pth"),
  ["model.pth"] = fixture("spec/fixtures/doc/model.pth"),
  -- docs/detection.md's weights: the detection fixtures' trained-like
  -- ssdlite and lraspp state_dicts (spec/fixtures/make_detection_fixtures.py,
  -- written by tools/run-specs into PTHCV_DETECTION)
  ["ssdlite320_mobilenet_v3_large.pth"] = function() return detection_fixture("ssdlite320_mobilenet_v3_large.pth") end,
  ["lraspp_mobilenet_v3_large.pth"] = function() return detection_fixture("lraspp_mobilenet_v3_large.pth") end,
  -- (a block marked `<!-- doc-test: file NAME -->` is the reader's file NAME
  -- for the blocks after it in its Markdown file, e.g. docs/custom-layers.md's net.lua)
}

local checkout_links = { "bin", "lua", "build", "csrc", "include", "examples", "spec", "tools", "docs",
                         "Makefile", "pthcv.lua", "pthcv-scm-1.rockspec", "README.md" }

local provided_cache = {}
local function provide(name)
  local c = provided_cache[name]
  if not c then
    local ok, path, why = pcall(provided[name])
    c = ok and { path = path, why = why } or { why = name .. ": " .. tostring(path) }
    provided_cache[name] = c
  end
  return c.path, c.why
end

-- Whether `text` names the file `name` (not as part of a longer path or word).
local function names_in_text(text, name)
  local s = 1
  while true do
    local a, e = text:find(name, s, true)
    if not a then return false end
    local before, after = text:sub(a - 1, a - 1), text:sub(e + 1, e + 1)
    if not before:match("[%w_%-%./]") and not after:match("[%w_]") then return true end
    s = e + 1
  end
end

-- The reader's files a block's text names (a name counts when no path or
-- word runs into it: `build/demo/resnet18.pth` is not `resnet18.pth`).
local function names_in(text)
  local found = {}
  for name in pairs(provided) do
    if names_in_text(text, name) then found[#found + 1] = name end
  end
  table.sort(found)
  return found
end

-- Whether a block builds pthcv or a program (`make ...`, `c++ ...`): under
-- the sanitizers (make sanitize) the normal build it would link is not there.
local function builds(text)
  for l in (text .. "\n"):gmatch("(.-)\n") do
    if l:match("^%$? ?make%f[%s%z]") or l:match("^%$? ?c%+%+%s") then return true end
  end
  return false
end

local function block_text(chain)
  local parts = {}
  for _, b in ipairs(chain) do parts[#parts + 1] = table.concat(b.lines, "\n") end
  return table.concat(parts, "\n")
end

-- A fresh folder for a block, with the checkout's links and the reader's
-- files; or nil and why a file cannot be made.
local function block_folder(b, chain, file_blocks)
  local slug = b.file:gsub("[/.]", "_") .. "-" .. b.line
  local dir = root .. "/build/doc-test/" .. slug
  local cmd = { "rm -rf " .. q(dir) .. " " .. q(dir .. ".out"), "mkdir -p " .. q(dir) .. " " .. q(dir .. ".out") }
  for _, name in ipairs(checkout_links) do
    cmd[#cmd + 1] = "ln -s " .. q(root .. "/" .. name) .. " " .. q(dir .. "/" .. name)
  end
  for _, name in ipairs(names_in(block_text(chain))) do
    local path, why = provide(name)
    if not path then return nil, why end
    cmd[#cmd + 1] = "ln -s " .. q(path) .. " " .. q(dir .. "/" .. name)
  end
  local code, _, err = support.run(table.concat(cmd, " && "))
  assert(code == 0, "making " .. dir .. ": " .. err)
  for _, e in ipairs(file_blocks) do
    if e.line < b.line and e.directive and e.directive.file then
      support.write_file(dir .. "/" .. e.directive.file, table.concat(e.lines, "\n") .. "\n")
    end
  end
  return dir
end

-- a reader's shell: none of the suite's variables, and not inside make (a
-- `make` in a block run by `make test` would print "Leaving directory")
local env_prefix = "env -u LUA_PATH -u LUA_CPATH -u PTHCV_ZOO -u PTHCV_ROOT -u PTHCV_FIXTURES "
                   .. "-u MAKELEVEL -u MAKEFLAGS -u MFLAGS "
                   .. "-u PTHCV_FIXTURES_TORCH -u PTHCV_PROGRESS -u PTHCV_DEBUG PATH=" .. q(root .. "/bin") .. ":\"$PATH\" "

-- The source of a chain: each block's lines at their lines of the file.
local function placed_source(chain, first_line)
  local out = {}
  for i, b in ipairs(chain) do
    local last = #b.lines
    while last > 0 and b.lines[last]:match("^%s*$") do last = last - 1 end
    for k, l in ipairs(b.lines) do
      -- a script's `return` (its last line) would end the chunk early
      if i < #chain and k == last and l:match("^return[%s%(]") then l = "" end
      out[b.first + k - 1] = l
    end
  end
  local n = 0
  for k in pairs(out) do if k > n then n = k end end
  for k = 1, n do out[k] = out[k] or "" end
  if first_line then out[1] = first_line .. (out[1] ~= "" and ("; " .. out[1]) or "") end
  return table.concat(out, "\n") .. "\n"
end

local function where(b) return b.file .. ":" .. b.line .. " (" .. b.lang .. " block)" end

local function tail(s, n)
  local lines = blocks.split_lines(s)
  local from = math.max(1, #lines - n + 1)
  local out = {}
  for i = from, #lines do out[#out + 1] = "  | " .. lines[i] end
  if from > 1 then table.insert(out, 1, "  | ...") end
  return #out > 0 and table.concat(out, "\n") or "  (no output)"
end

local function run_lua(b, chain, dir)
  local src, result = dir .. ".out/block.lua", dir .. ".out/result.lua"
  support.write_file(src, placed_source(chain))
  local code, out, err = support.run("cd " .. q(dir) .. " && " .. env_prefix .. "timeout 600 pthcv lua "
                                     .. q(root .. "/spec/doc_lua_runner.lua") .. " " .. q(src) .. " "
                                     .. q("@" .. b.file) .. " " .. q(result))
  local chunk = loadfile(result)
  local r = chunk and chunk()
  if not r then
    return where(b) .. ": did not run (exit " .. code .. "):\n" .. tail(out .. err, 20)
  end
  if r.error then
    return where(b) .. ": raised an error:\n" .. r.error
  end
  for _, st in ipairs(blocks.lua_expectations(b)) do
    local got = {}
    for _, rec in ipairs(r.out) do
      if rec[1] >= st.from and rec[1] <= st.line then got[#got + 1] = rec[2] end
    end
    local diff = blocks.compare(st.expected, table.concat(got))
    if diff then
      return string.format("%s: the output of lines %d-%d differs: %s", where(b), st.from, st.line, diff)
    end
  end
end

local function run_sh(b, chain, dir)
  local script = dir .. ".out/block.sh"
  support.write_file(script, placed_source(chain,
    "set -e; trap 'echo \"doc-test: the command at line $LINENO exited with status $?\" >&2' ERR"))
  local code, out, err = support.run("cd " .. q(dir) .. " && " .. env_prefix .. "timeout 600 bash " .. q(script))
  if code ~= 0 then
    return string.format("%s: exited with status %d (a line of the file: see the last line of the output):\n%s",
                         where(b), code, tail(out .. err, 30))
  end
end

local function run_console(b, chain, dir)
  local parts, all = { "cd " .. q(dir) }, {}
  for _, c in ipairs(chain) do
    local cmds, err = blocks.console_commands(c)
    if not cmds then return err end
    for _, cmd in ipairs(cmds) do
      all[#all + 1] = { block = c, cmd = cmd }
      local o = dir .. ".out/" .. #all
      parts[#parts + 1] = "{\n" .. cmd.command .. "\n} >" .. q(o) .. " 2>&1 </dev/null; echo $? >" .. q(o .. ".status")
    end
  end
  local script = dir .. ".out/block.sh"
  support.write_file(script, table.concat(parts, "\n") .. "\n")
  local code, out, err = support.run(env_prefix .. "timeout 600 bash " .. q(script))
  if code ~= 0 then return where(b) .. ": the commands did not run (exit " .. code .. "):\n" .. tail(out .. err, 20) end
  for i, a in ipairs(all) do
    if a.block == b then
      local o = dir .. ".out/" .. i
      local got = support.read_file(o) or ""
      local status = tonumber(support.read_file(o .. ".status") or "")
      local head = string.format("%s: `$ %s` (line %d)", where(b), a.cmd.command:gsub("\n.*", " ..."), a.cmd.line)
      if status ~= a.cmd.status then
        return string.format("%s exited with status %s, the block states %d%s:\n%s", head, tostring(status),
                             a.cmd.status, a.cmd.status ~= 0 and "" or " (a last line `[exit N]` states another)",
                             tail(got, 20))
      end
      local diff = blocks.compare(a.cmd.expected, got)
      if diff then return head .. ": " .. diff end
    end
  end
end

-- A repl block: its typed lines go to `pthcv repl` (which prints no prompt
-- when its input is no terminal), what it prints must be what the block shows.
local function run_repl(b, chain, dir)
  local input = dir .. ".out/input.txt"
  local parts = {}
  for _, c in ipairs(chain) do parts[#parts + 1] = (blocks.repl_session(c)) end
  support.write_file(input, table.concat(parts))
  -- the output of the blocks it continues comes first
  local skip = ""
  if #chain > 1 then
    local before = {}
    for i = 1, #chain - 1 do before[i] = (blocks.repl_session(chain[i])) end
    support.write_file(input .. ".before", table.concat(before))
    local _, o, e = support.run("cd " .. q(dir) .. " && { " .. env_prefix .. "timeout 600 pthcv repl <"
                                .. q(input .. ".before") .. " 2>&1; }")
    skip = o .. e
  end
  local code, out, err = support.run("cd " .. q(dir) .. " && { " .. env_prefix .. "timeout 600 pthcv repl <"
                                     .. q(input) .. " 2>&1; }")
  local got = out .. err
  if got:sub(1, #skip) == skip then got = got:sub(#skip + 1) end
  if code ~= 0 then return string.format("%s: pthcv repl exited with status %d:\n%s", where(b), code, tail(got, 20)) end
  local _, expected = blocks.repl_session(b)
  local diff = blocks.compare(expected, got)
  if diff then return where(b) .. ": " .. diff end
end

local runners = { lua = run_lua, sh = run_sh, console = run_console, repl = run_repl }

local function doc_files()
  local files = { "README.md" }
  local p = io.popen("cd " .. q(root) .. " && ls docs/*.md")
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  return files
end

describe("docs", function()
  for _, file in ipairs(doc_files()) do
    local text = assert(support.read_file(root .. "/" .. file), file)
    local file_blocks = blocks.parse(text, file)
    for _, b in ipairs(file_blocks) do
      local name = string.format("%s:%d %s", file, b.line, b.lang ~= "" and b.lang or "(no language)")
      if b.error then
        it(name, function() error(b.error, 0) end)
      elseif b.directive and b.directive.skip and b.kind then
        pending(name .. ": " .. b.directive.skip)
      elseif b.directive and b.directive.file then
        -- the reader's file: the blocks that use it run it
        it(name .. " (the file " .. b.directive.file .. ")", function()
          for _, e in ipairs(file_blocks) do
            if e.line > b.line and e.kind and names_in_text(table.concat(e.lines, "\n"), b.directive.file) then
              return
            end
          end
          error(string.format("%s:%d: the block is the file %s, which no runnable block after it uses",
                              file, b.line, b.directive.file), 0)
        end)
      elseif b.kind then
        it(name, function()
          local chain = blocks.chain(b)
          if os.getenv("PTHCV_SANITIZE") == "1" and builds(block_text(chain)) then
            pending(name .. ": builds with make or c++, not under the sanitizers (make test runs it)")
            return
          end
          local dir, why = block_folder(b, chain, file_blocks)
          if not dir then pending(name .. ": " .. why) return end
          local failure = runners[b.kind](b, chain, dir)
          if failure then
            error(failure .. "\n(the block ran in " .. dir .. ", kept)", 0)
          end
          support.run("rm -rf " .. q(dir) .. " " .. q(dir .. ".out"))
        end)
      end
    end
  end
end)

-- The conventions themselves, on a Markdown text of known blocks: what they
-- state is checked, and a failure names the file, the line and the difference.
describe("the doc-test conventions", function()
  local md = table.concat({
    "# synthetic",                                     -- 1
    "```lua",                                          -- 2
    "local t = {3, 1, 2}",                             -- 3
    "table.sort(t)",                                   -- 4
    "print(table.concat(t, ' '))   --> 1 2 3",          -- 5
    "for i = 1, 2 do print(i) end",                    -- 6
    "--> 1",                                           -- 7
    "--> 2",                                           -- 8
    "```",                                             -- 9
    "<!-- doc-test: continues -->",                    -- 10
    "```lua",                                          -- 11
    "print(#t)                     --> 4",             -- 12
    "```",                                             -- 13
    "```console",                                      -- 14
    "$ printf 'a\\nb\\nc\\nd\\n'",                      -- 15
    "a",                                               -- 16
    "...",                                             -- 17
    "d",                                               -- 18
    "$ false",                                         -- 19
    "[exit 1]",                                        -- 20
    "$ echo one two",                                  -- 21
    "one ... three",                                   -- 22
    "```",                                             -- 23
    "```sh",                                           -- 24
    "true",                                            -- 25
    "test -f missing.txt",                             -- 26
    "```",                                             -- 27
    "```",                                             -- 28
    "untagged",                                        -- 29
    "```",                                             -- 30
    "<!-- doc-test: skip -->",                         -- 31
    "```sh",                                           -- 32
    "```",                                             -- 33
    "<!-- doc-test: skip (needs a camera) -->",        -- 34
    "```repl",                                         -- 35
    "pthcv> 6 * 7",                                    -- 36
    "42",                                              -- 37
    "pthcv> for i = 1, 2 do",                          -- 38
    ">>   io.write(i, ' ')",                           -- 39
    ">> end",                                          -- 40
    "1 2",                                             -- 41
    "```",                                             -- 42
  }, "\n") .. "\n"
  local parsed = blocks.parse(md, "synthetic.md")
  local function at(line)
    for _, b in ipairs(parsed) do if b.line == line then return b end end
  end
  local function run(b)
    local chain = blocks.chain(b)
    local dir = assert(block_folder(b, chain, parsed))
    local failure = runners[b.kind](b, chain, dir)
    support.run("rm -rf " .. q(dir) .. " " .. q(dir .. ".out"))
    return failure
  end

  it("checks a Lua block's --> statements, each over the code above it", function()
    assert.is_nil(run(at(2)))
    local st = blocks.lua_expectations(at(2))
    assert.are.same({ 3, 5 }, { st[1].from, st[1].line })
    assert.are.same({ 6, 7, 2 }, { st[2].from, st[2].line, #st[2].expected })
  end)

  it("runs a continuing block after the one before it, and names the line that differs", function()
    local failure = run(at(11))
    assert.truthy(failure:find("synthetic.md:11 (lua block): the output of lines 12-12 differs: "
                               .. "line 12 states `4`", 1, true), failure)
    assert.truthy(failure:find("  | 3", 1, true), failure)
  end)

  it("checks a console block's output and exit status, ... matching lines and text", function()
    local failure = run(at(14))
    assert.truthy(failure:find("`$ echo one two` (line 21): line 22 states `one ... three`", 1, true), failure)
    assert.truthy(failure:find("  | one two", 1, true), failure)
    local cmds = blocks.console_commands(at(14))
    assert.are.same({ 0, 1, 0 }, { cmds[1].status, cmds[2].status, cmds[3].status })
  end)

  it("names the line of a failing shell command", function()
    local failure = run(at(24))
    assert.truthy(failure:find("synthetic.md:24 (sh block): exited with status 1", 1, true), failure)
    assert.truthy(failure:find("the command at line 26 exited with status 1", 1, true), failure)
  end)

  it("refuses a block without a language and a skip without a reason; keeps a skip's reason", function()
    assert.truthy(at(28).error:find("synthetic.md:28: a code block without a language", 1, true))
    assert.truthy(at(32).error:find("synthetic.md:31: `skip` needs its reason", 1, true))
    assert.are.equal("needs a camera", at(35).directive.skip)
  end)

  it("types a repl block's lines into pthcv repl and checks what it prints", function()
    assert.is_nil(run(at(35)))
    local input, expected = blocks.repl_session(at(35))
    assert.are.equal("6 * 7\nfor i = 1, 2 do\n  io.write(i, ' ')\nend\n", input)
    assert.are.same({ "42", "1 2" }, { expected[1].text, expected[2].text })
  end)

  it("matches stated output: blanks, `...` in a line and as lines", function()
    local e = function(...)
      local t = {}
      for i, s in ipairs { ... } do t[i] = { text = s, line = i } end
      return t
    end
    assert.is_nil(blocks.compare(e("a  b", "...", "z"), "a\tb\nx\ny\nz\n\n"))
    assert.is_nil(blocks.compare(e("0.0160..."), "0.016028057\n"))
    assert.is_nil(blocks.compare(e("a", "...", "b"), "a\nb\n"))
    assert.truthy(blocks.compare(e("a", "b"), "a\nb\nc\n"):find("the output goes on after", 1, true))
    assert.truthy(blocks.compare(e("a", "c"), "a\nb\n"):find("line 2 states `c`", 1, true))
    assert.truthy(blocks.compare(e("x(1)"), "x11\n"))   -- pattern characters are literal
  end)
end)
