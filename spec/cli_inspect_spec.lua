-- cli_inspect_spec: `pthcv inspect` against what torch says about the same
-- files: parameters and buffers as model.parameters() and model.buffers()
-- count them, print(model) for whole-model pickles, and --json's values
-- (epoch, argparse.Namespace fields, optimizer hyper-parameters).
local support = require "support"
local json = require "dkjson"

local function q(s) return support.shell_quote(s) end

describe("pthcv inspect, against torch", function()
  if support.run("/usr/bin/python3 -c 'import torch, torchvision'") ~= 0 then
    pending("python3-torch or python3-torchvision is not installed: nothing to compare with")
    return
  end
  local dir = support.tmpname("-inspect")
  local ref
  setup(function()
    os.execute("mkdir -p " .. q(dir))
    local script = [[
import argparse, json, sys, torch, torchvision
from torch import nn
d = sys.argv[1]
torch.manual_seed(0)

class Block(nn.Module):       # a user's class: torch prints its children only
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.act = nn.ReLU6(inplace=True)
        self.register_buffer("anchors", torch.ones(3, 2))
    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 5, stride=(2, 1), padding=(2, 0), dilation=1),
                                  nn.MaxPool2d(3, 2, 1), nn.LeakyReLU(0.2))
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.drop = nn.Dropout(p=0.25)
        self.fc = nn.Linear(8, 10)
        self.fc2 = self.fc            # shared: counted once

import __main__
__main__.Block, __main__.Net = Block, Net
m = Net()
torch.save(m, d + "/model.pth")
r18 = torchvision.models.resnet18()
opt = torch.optim.SGD(r18.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
args = argparse.Namespace(arch="resnet18", lr=0.1, epochs=90, pretrained=False)
torch.save({"epoch": 7, "arch": "resnet18", "state_dict": r18.state_dict(), "optimizer": opt.state_dict(),
            "best_acc1": 71.5, "args": args}, d + "/checkpoint.pth")
count = lambda it: sum(t.numel() for t in it)
json.dump({"model": {"parameters": count(m.parameters()), "buffers": count(m.buffers()), "repr": str(m)},
           "resnet18": {"parameters": count(r18.parameters()), "buffers": count(r18.buffers())},
           "optimizer": opt.state_dict()["param_groups"][0]}, open(d + "/ref.json", "w"))
]]
    local code, _, err = support.run("/usr/bin/python3 -c " .. q(script) .. " " .. q(dir))
    assert(code == 0, err)
    ref = json.decode(support.read_file(dir .. "/ref.json"))
  end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  it("counts parameters and buffers as torch does (a state_dict in a checkpoint)", function()
    local code, out, err = support.pthcv("inspect", dir .. "/checkpoint.pth")
    assert.are.equal(0, code, err)
    local want = string.format("parameters: %d, buffers: %d (state_dict at 'state_dict': ", ref.resnet18.parameters,
                               ref.resnet18.buffers)
    assert.truthy(out:find(want, 1, true), want .. "\n" .. out:sub(-300))
    local _, jout = support.pthcv("inspect", dir .. "/checkpoint.pth", "--json")
    local j = json.decode(jout)
    assert.are.equal(ref.resnet18.parameters, j.parameters)
    assert.are.equal(ref.resnet18.buffers, j.buffers)
  end)

  it("counts a whole-model pickle's parameters and buffers from its modules", function()
    local code, out, err = support.pthcv("inspect", dir .. "/model.pth")
    assert.are.equal(0, code, err)
    local want = string.format("parameters: %d, buffers: %d (", ref.model.parameters, ref.model.buffers)
    assert.truthy(out:find(want, 1, true), want .. "\n" .. out:sub(-300))
  end)

  it("prints a whole-model pickle as torch's print(model) does", function()
    local _, out = support.pthcv("inspect", dir .. "/model.pth")
    local printed = out:match("module, as torch prints it:\n(.-)\n\n")
    assert(printed, out)
    printed = printed:gsub("\n  ", "\n"):gsub("^  ", "")
    assert.are.equal(ref.model["repr"], printed)
    local _, jout = support.pthcv("inspect", dir .. "/model.pth", "--json")
    local j = json.decode(jout)
    assert.are.equal(ref.model["repr"], j.modules[1]["repr"])
  end)

  it("--json holds the file's other values: epoch, the Namespace's fields, the optimizer's settings", function()
    local code, out, err = support.pthcv("inspect", dir .. "/checkpoint.pth", "--json")
    assert.are.equal(0, code, err)
    local j = json.decode(out)
    local v = j.values
    assert.are.equal(7, v.epoch)
    assert.are.equal(71.5, v.best_acc1)
    assert.are.same({ __class__ = "argparse.Namespace", arch = "resnet18", lr = 0.1, epochs = 90, pretrained = false },
                    v.args)
    local group = v.optimizer.param_groups[1]
    for _, k in ipairs { "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize" } do
      assert.are.equal(ref.optimizer[k], group[k], k)
    end
    assert.are.same(ref.optimizer.params, group.params)
    -- tensors stay in "tensors"; the values point at them by name
    assert.are.same({ tensor = "state_dict.conv1.weight" }, v.state_dict["conv1.weight"])
    assert.are.equal("state_dict.conv1.weight", j.tensors[1].name)
    -- keys in file order
    assert.truthy(out:find('"values":{"epoch":7,"arch":"resnet18","state_dict":{', 1, true))
  end)
end)

describe("pthcv inspect", function()
  it("has a hook for modules it cannot print (TorchScript's)", function()
    local extra = require "pthcv.reader.inspect_modules"
    local pthcv = require "pthcv"
    local root = pthcv.load(support.root .. "/spec/fixtures/torchscript_script.pt")
    local seen
    extra.module_printers[1] = function(obj)
      if type(obj) == "table" and obj.class and obj.class:match("^__torch__%.") then seen = obj.class; return { "Scripted()" } end
    end
    local mods = extra.modules(root)
    extra.module_printers[1] = nil
    assert.truthy(seen)
    assert.are.same({ { "", { "Scripted()" } } }, mods)
  end)
end)
