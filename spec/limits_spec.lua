-- spec/limits_spec.lua: every reader limit stops a file with a clear error,
-- from Lua (pthcv.load's opts) and from the command line (--max-*).
local support = require "support"
local pthcv = require "pthcv"

local fx = support.root .. "/spec/fixtures/"

-- {option, value, file, words the message must contain}
local cases = {
  { "max_depth", 2, "checkpoint.pth", { "nesting depth", "limit of 2" } },
  { "max_memo", 10, "checkpoint.pth", { "memo entries", "10" } },
  { "max_string", 3, "checkpoint.pth", { "exceeds the limit of 3" } },
  { "max_pickle", 100, "checkpoint.pth", { "data.pkl", "max_pickle" } },
  { "max_values", 50, "checkpoint.pth", { "more than 50 values" } },
  { "max_total_bytes", 100, "zip_state_dict.pth", { "max_total_bytes", "100 bytes" } },
  { "max_total_bytes", 100, "legacy_state_dict.pth", { "max_total_bytes" } },
  { "max_zip_entries", 2, "zip_state_dict.pth", { "zip entries", "max_zip_entries" } },
  { "max_zip_ratio", 1000, "evil/zip_bomb.pth", { "data.pkl", "max_zip_ratio" } },
  { "max_expanded_bytes", 16, "views.pth", { "max_expanded_bytes", "over a storage" } },
}

describe("reader limits", function()
  for _, c in ipairs(cases) do
    local opt, value, file, words = c[1], c[2], c[3], c[4]
    it(opt .. " = " .. value .. " stops " .. file, function()
      local ok, err = pcall(pthcv.load, fx .. file, { [opt] = value })
      assert.is_false(ok)
      err = tostring(err)
      assert.is_truthy(err:find(file, 1, true), err)
      for _, w in ipairs(words) do assert.is_truthy(err:find(w, 1, true), "'" .. w .. "' in: " .. err) end
      assert.are.equal(pthcv.C.PTHCV_ERR_LIMIT, pthcv.C.pthcv_last_status())
    end)
    it("--" .. opt:gsub("_", "-") .. " " .. value .. " stops `pthcv inspect " .. file .. "`", function()
      local code, out, err = support.pthcv("inspect", fx .. file, "--" .. opt:gsub("_", "-"), tostring(value))
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.is_truthy(err:find(words[1], 1, true), err)
    end)
  end

  it("the defaults read every good fixture", function()
    for _, f in ipairs { "checkpoint.pth", "zip_state_dict.pth", "legacy_state_dict.pth", "zip_deflated.pth" } do
      assert.is_truthy(pthcv.load(fx .. f))
    end
  end)

  it("a bad limit value is a usage error", function()
    local code, _, err = support.pthcv("inspect", fx .. "checkpoint.pth", "--max-depth", "lots")
    assert.are.equal(2, code)
    assert.is_truthy(err:find("--max-depth", 1, true))
  end)
end)
