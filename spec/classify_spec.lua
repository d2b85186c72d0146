-- classify_spec: `pthcv run --model NAME --weights FILE IMAGE...` against
-- torch: spec/fixtures/make_classify_refs.py saves a resnet18 and the top-5
-- torch computes on the image preprocessed with OpenCV as each option set
-- documents; pthcv must print the same classes with the same probabilities.
-- Also: text and JSON output, labels, errors, pthcv.classify's helpers.
local support = require "support"
local pthcv = require "pthcv"
local classify = require "pthcv.image.classify"
local json = require "dkjson"

local IMG = support.root .. "/examples/demo.jpg"

describe("pthcv.image.classify", function()
  it("takes the softmax's top-k of one row of logits", function()
    local top = classify.top(pthcv.Tensor.from_table({ { 1, 3, 2, 0 } }, "float32"), 2)
    assert.are.equal(1, top[1].index)
    assert.are.equal(2, top[2].index)
    local z = math.exp(1) + math.exp(3) + math.exp(2) + 1
    assert.is_true(math.abs(top[1].prob - math.exp(3) / z) < 1e-12)
    assert.are.equal("class 1", top[1].label)
  end)

  it("names ImageNet's classes for 1000-class models, else from a file or by number", function()
    assert.are.equal("tench", classify.labels(1000)(0))
    assert.are.equal("toilet tissue", classify.labels(1000)(999))
    assert.are.equal("class 7", classify.labels(10)(7))
    local f = support.tmpname(".txt")
    support.write_file(f, "cat\ndog\r\n\nbird\n")
    assert.are.equal("bird", classify.labels(3, f)(2))
    assert.has_error(function() classify.labels(4, f) end)
    os.remove(f)
  end)
end)

describe("pthcv run IMAGE...", function()
  local have_torch = support.run("/usr/bin/python3 -c 'import torch, torchvision, cv2'") == 0
  if not have_torch then
    pending("torch, torchvision or cv2 missing: no comparison with torch")
    return
  end
  local dir = support.tmpname("-classify")
  local refs, weights
  setup(function()
    local code, _, err = support.run("/usr/bin/python3 " .. support.shell_quote(support.root ..
      "/spec/fixtures/make_classify_refs.py") .. " " .. support.shell_quote(IMG) .. " " .. support.shell_quote(dir))
    assert(code == 0, "make_classify_refs.py failed: " .. err)
    refs = json.decode(support.read_file(dir .. "/refs.json"))
    weights = dir .. "/model.pth"
  end)
  teardown(function() os.execute("rm -rf " .. support.shell_quote(dir)) end)

  local function run(...)
    return support.pthcv("run", "--model", "resnet18", "--weights", weights, ...)
  end

  it("gives torch's top-5 and probabilities for each preprocessing", function()
    assert.are.equal(3, #refs.cases)
    for _, case in ipairs(refs.cases) do
      local args = { IMG, "--json" }
      for _, a in ipairs(case.args) do args[#args + 1] = a end
      local code, out, err = run(unpack(args))
      assert.are.equal(0, code, err)
      local r = json.decode(out)   -- one image: one JSON object
      assert.are.equal(IMG, r.image)
      assert.are.equal(5, #r.top)
      for i, want in ipairs(case.top) do
        local got = r.top[i]
        assert.are.equal(want.index, got.index, table.concat(case.args, " ") .. " rank " .. i)
        assert.is_true(math.abs(want.prob - got.prob) < 1e-4,
                       string.format("%s rank %d: prob %g, torch %g", table.concat(case.args, " "), i, got.prob,
                                     want.prob))
        assert.are.equal(classify.labels(1000)(want.index), got.label)
      end
    end
  end)

  it("prints one block (text) or one JSON line per image; --topk; --labels", function()
    local case = refs.cases[1]
    local code, out, err = run(IMG, IMG, "--resize", "256", "--topk", "3")
    assert.are.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(8, #lines)
    assert.are.equal(IMG, lines[1])
    local label = classify.labels(1000)(case.top[1].index)
    assert.are.equal(string.format("  %.4f  %s (%d)", case.top[1].prob, label, case.top[1].index), lines[2])
    assert.are.same(lines[2], lines[6])

    code, out = run(IMG, IMG, "--json", "--topk", "2")
    assert.are.equal(0, code)
    local n = 0
    for l in out:gmatch("[^\n]+") do
      n = n + 1
      assert.are.equal(2, #json.decode(l).top)
    end
    assert.are.equal(2, n)

    local names = {}
    for i = 0, 999 do names[#names + 1] = "label" .. i end
    local f = dir .. "/labels.txt"
    support.write_file(f, table.concat(names, "\n") .. "\n")
    code, out = run(IMG, "--resize", "256", "--labels", f, "--json")
    assert.are.equal(0, code)
    assert.are.equal("label" .. case.top[1].index, json.decode(out).top[1].label)
  end)

  it("is what make demo ends with: the top-5 of the bundled image", function()
    local code, out, err = support.run("cd " .. support.shell_quote(support.root) .. " && tools/demo")
    assert.are.equal(0, code, err)
    local block = out:match("\n(examples/demo%.jpg\n.*)$")
    assert.is_truthy(block, out)
    local n = 0
    for _ in block:gmatch("\n  0%.%d%d%d%d  [^\n]+ %(%d+%)") do n = n + 1 end
    assert.are.equal(5, n)
  end)

  it("reports errors", function()
    -- usage errors exit 2, runtime errors 1
    local code, _, err = support.pthcv("run", "--model", "resnet18", IMG)
    assert.are.equal(2, code)
    assert.matches("--weights", err, 1, true)
    code, _, err = run(IMG, "--mean", "a,b")
    assert.are.equal(2, code)
    assert.matches("--mean", err, 1, true)
    -- two numbers for three channels would leave one unnormalised
    code, _, err = run(IMG, "--mean", "0.5,0.5")
    assert.are.equal(2, code)
    assert.matches("--mean takes one number or three (one per channel), got 2", err, 1, true)
    code, _, err = run("/nonexistent.jpg")
    assert.are.equal(1, code)
    assert.matches("/nonexistent.jpg", err, 1, true)
    code = run(IMG, "--input", "x.npy")
    assert.are.equal(2, code)
  end)
end)
