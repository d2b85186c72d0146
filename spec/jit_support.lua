-- spec/jit_support.lua: helpers of the pthcv.jit specs (not a spec itself):
-- reading a fixture manifest, running an archive's cases, comparing with
-- what torch computed.
local support = require "support"
local dkjson = require "dkjson"

local M = {}

function M.manifest(dir)
  local text = support.read_file(dir .. "/manifest.json")
  if not text then return nil end
  return dkjson.decode(text)
end

-- The arguments of a case: tensors from their .npy files, other values as given.
function M.case_args(pthcv, dir, case)
  local args = {}
  for i, a in ipairs(case.args) do
    if a.tensor then args[i] = pthcv.load_npy(dir .. "/" .. a.tensor)
    elseif a.tensors then   -- a list of tensors (the detectors' pictures)
      local l = require("pthcv.jit.values").list {}
      for j, f in ipairs(a.tensors) do l[j] = pthcv.load_npy(dir .. "/" .. f) end
      args[i] = l
    else args[i] = a.value end
  end
  return args
end

-- The tensor under key in an output (a tensor, a tuple/list or a dict);
-- a dotted key ("1.0.boxes") walks nested tuples, lists and dicts.
function M.output(v, key)
  local head, rest = key:match("^([^.]+)%.(.+)$")
  if head then
    local OrderedDict = require "pthcv.reader.odict"
    local inner = OrderedDict.is(v) and v[head] or v[tonumber(head) + 1]
    if inner == nil then return nil end
    return M.output(inner, rest)
  end
  local Tensor = require "pthcv.tensor"
  if Tensor.is(v) then
    assert(key == "0", "a single tensor output, but torch's has key " .. key)
    return v
  end
  local OrderedDict = require "pthcv.reader.odict"
  if OrderedDict.is(v) then return v[key] end
  local tensors = {}
  for i = 1, #v do if Tensor.is(v[i]) then tensors[#tensors + 1] = { i - 1, v[i] } end end
  return v[tonumber(key) + 1]
end

-- Largest |a - b| and largest |b| over two tensors of one shape.
function M.diff(a, b)
  assert(#a.shape == #b.shape, "ranks differ: " .. tostring(a) .. " vs " .. tostring(b))
  for i = 1, #a.shape do assert(a.shape[i] == b.shape[i], "shapes differ: " .. tostring(a) .. " vs " .. tostring(b)) end
  local x, y = a:to("float64"):contiguous(), b:to("float64"):contiguous()
  local p, q = x:data(), y:data()
  local md, mx = 0, 0
  for i = 0, a.numel - 1 do
    local d = math.abs(p[i] - q[i])
    if d ~= d then d = math.huge end
    if d > md then md = d end
    if math.abs(q[i]) > mx then mx = math.abs(q[i]) end
  end
  return md, mx
end

-- Runs every case of a manifest entry on module m and checks each output
-- within tol * (largest |value| of torch's output) (and 1e-6 absolute).
function M.check_cases(pthcv, dir, entry, m, tol)
  for _, case in ipairs(entry.cases) do
    local args = M.case_args(pthcv, dir, case)
    local y = m(unpack(args, 1, #case.args))
    for _, o in ipairs(case.outputs) do
      local ref = pthcv.load_npy(dir .. "/" .. o.file)
      local got = M.output(y, o.key)
      assert(got ~= nil, entry.file .. " " .. case.case .. ": no output " .. o.key)
      if got.dtype ~= "float32" or ref.dtype ~= "float32" then
        assert(got.dtype == ref.dtype or (got.dtype:match("int") and ref.dtype:match("int")),
               entry.file .. " " .. case.case .. " output " .. o.key .. ": dtype " .. got.dtype .. ", torch's " .. ref.dtype)
      end
      local md, mx = M.diff(got, ref)
      assert(md <= tol * mx + 1e-6, string.format("%s %s output %s: differs from torch's by %.3g (largest value %.3g)",
                                                  entry.file, case.case, o.key, md, mx))
    end
  end
end

return M
