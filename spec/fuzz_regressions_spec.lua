-- spec/fuzz_regressions_spec.lua: replays spec/fuzz/regressions/ (inputs
-- `make fuzz` once broke the reader with) through the Lua API.
local support = require "support"
local pthcv = require "pthcv"

local dir = support.root .. "/spec/fuzz/regressions"
-- what each input must give now: the words of its refusal, or "loads"
local expected = {
  ["oom-expanded-view-contiguous.pth"] = "max_expanded_bytes",
  ["ubsan-inst-empty-stack.pth"] = "main pickle at byte 75",
  ["oom-pickle-record-claims-2gb.pth"] = "damaged zip directory",
  ["oom-filestorage-mat-cols-8gb.yml"] = "key 'w': the Mat's cols is not a size",
  ["timeout-stride0-weights.pth"] = "loads",
  ["timeout-memo-multiples-65536.pkl"] = "loads",
  ["asan-xml-attribute-at-end.xml"] = "the XML ends inside a tag, after the '=' at offset 9",
}

describe("fuzz regressions", function()
  local names = {}
  local p = io.popen("ls " .. support.shell_quote(dir))
  for name in p:lines() do
    if name ~= "README.md" then names[#names + 1] = name end
  end
  p:close()

  it("every input has an expectation", function()
    for _, name in ipairs(names) do assert.is_truthy(expected[name], name .. " has no entry in the spec") end
  end)

  for _, name in ipairs(names) do
    it(name .. " gives " .. tostring(expected[name]), function()
      local path = dir .. "/" .. name
      local ok, err = pcall(function()
        for _, nt in ipairs(pthcv.named_tensors(path)) do
          local t = nt[2]
          if not t.is_quantized then t:contiguous() end
        end
      end)
      if expected[name] == "loads" then
        assert.is_true(ok, tostring(err))
      else
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find(path, 1, true), tostring(err))
        assert.is_truthy(tostring(err):find(expected[name], 1, true), tostring(err))
      end
    end)
  end
end)

-- `make fuzz` must reach every parser of untrusted input: every source of
-- the reader and of the TorchScript parser, and every file that defines a
-- pthcv_open_* format reader (the FileStorage one is C++, and without it the
-- fuzzer only saw such files refused). Read from `make -n fuzz`'s commands.
describe("make fuzz", function()
  it("builds every parser into its targets", function()
    local root = support.shell_quote(support.root)
    local code, commands, err = support.run("make -n -C " .. root .. " --no-print-directory fuzz")
    assert.are.equal(0, code, err)
    local p = io.popen("cd " .. root .. " && ls csrc/reader/*.c csrc/jit/*.c && "
                       .. "grep -rlE '^(extern \"C\" )?int pthcv_open_[a-z_]+\\(pthcv_file' csrc --include='*.c' --include='*.cpp'")
    local sources, missing = 0, {}
    for src in p:lines() do
      sources = sources + 1
      if not commands:find(" " .. src, 1, true) then missing[#missing + 1] = src end
    end
    p:close()
    assert.is_true(sources >= 12, sources .. " sources")
    assert.are.same({}, missing)
    assert.is_truthy(commands:find("-o build/fuzz/fuzz_jit ", 1, true), commands)
  end)
end)
