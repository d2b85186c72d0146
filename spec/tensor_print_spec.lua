-- tensor_print_spec: lua/pthcv/tensor/print.lua against torch's repr of the
-- same tensors (torch's default print options).
local support = require "support"
local json = require "dkjson"
local pthcv = require "pthcv"
local P = require "pthcv.tensor.print"

describe("tensor printing", function()
  if support.run("/usr/bin/python3 -c 'import torch'") ~= 0 then
    pending("python3-torch is not installed: no repr to compare with")
    return
  end
  local dir = support.tmpname("-print")
  local script = [[
import json, sys, torch
torch.manual_seed(0)
d = sys.argv[1]
cases = {
    "small": torch.randn(2, 3), "ints": torch.arange(-5, 20), "bool": torch.tensor([True, False, True]),
    "int32": torch.arange(12, dtype=torch.int32).reshape(3, 4), "half": torch.randn(4).half(),
    "bfloat16": (torch.randn(3, 2) * 100).bfloat16(), "big2d": torch.randn(100, 100),
    "big3d": torch.randn(4, 30, 20) * 1000, "sci": torch.tensor([1e-6, 3.0, 5e3]),
    "integral_floats": torch.tensor([1.0, -2.0, 300.0]), "integral_sci": torch.tensor([1.0, 2e9]),
    "scalar": torch.tensor(3.25), "scalar_int": torch.tensor(7), "empty": torch.zeros(0, 3),
    "empty_int32": torch.zeros(0, dtype=torch.int32), "wrapped": torch.randn(40),
    "nonfinite": torch.tensor([float("nan"), float("inf"), -float("inf"), 1.5, 0.0]),
    "float64": torch.randn(2, 2, dtype=torch.float64), "int64_big": torch.tensor([2 ** 62 + 1, -5]),
    "uint8": torch.arange(0, 250, 7, dtype=torch.uint8), "zeros": torch.zeros(2, 2),
    "int16_4d": torch.arange(24, dtype=torch.int16).reshape(2, 3, 2, 2),
    "wide_float64": torch.randn(2, 30, dtype=torch.float64) * 1e5,
    "transposed": torch.randn(3, 5).t(), "long_suffix": torch.randn(7, 11, dtype=torch.float64),
}
torch.save(cases, d + "/cases.pth")
json.dump({k: repr(v) for k, v in cases.items()}, open(d + "/reprs.json", "w"))
]]
  os.execute("mkdir -p " .. support.shell_quote(dir))
  local code, _, err = support.run("/usr/bin/python3 -c " .. support.shell_quote(script) .. " " .. support.shell_quote(dir))
  assert(code == 0, err)
  local want = json.decode(support.read_file(dir .. "/reprs.json"))
  local cases = pthcv.load(dir .. "/cases.pth")
  for _, name in ipairs(support.sorted_keys(want)) do
    it(name .. " prints as torch's repr", function()
      assert.are.equal(want[name], P.format(cases[name]))
      assert.are.equal(want[name], cases[name]:repr())
    end)
  end
  os.execute("rm -rf " .. support.shell_quote(dir))
end)
