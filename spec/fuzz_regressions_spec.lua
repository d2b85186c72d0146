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
