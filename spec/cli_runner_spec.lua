-- cli_runner_spec: what every `pthcv` command shares (lua/pthcv/cli/runner.lua):
-- --help per command, "did you mean", exit statuses (usage 2, runtime 1),
-- messages without pthcv's Lua source positions; and the checks around
-- --weights (the mismatch report, --init), progress bars.
local support = require "support"
local json = require "dkjson"
local pthcv = require "pthcv"

local function q(s) return support.shell_quote(s) end

-- No "file.lua:12:" of pthcv's own code in a message.
local function assert_clean(err)
  assert.is_nil(err:match("[%w_/%.]+%.lua:%d+:"), err)
  assert.is_nil(err:match("stack traceback"), err)
end

describe("pthcv commands", function()
  local commands = { "inspect", "scan", "convert", "run", "bench", "models", "export", "lua", "repl" }

  it("each answer --help and -h with their usage and options, exit 0", function()
    for _, c in ipairs(commands) do
      for _, flag in ipairs { "--help", "-h" } do
        local code, out, err = support.pthcv(c, flag)
        assert.are.equal(0, code, c .. " " .. flag .. ": " .. err)
        assert.are.equal("", err)
        assert.truthy(out:find("^usage: pthcv " .. c), out)
        assert.truthy(out:find("\noptions:\n", 1, true), out)
      end
    end
    -- anywhere among the arguments, and through `pthcv help COMMAND`
    local code, out = support.pthcv("run", "--model", "resnet18", "--help")
    assert.are.equal(0, code)
    assert.truthy(out:find("--weights FILE", 1, true))
    local code2, out2 = support.pthcv("help", "convert")
    assert.are.equal(0, code2)
    assert.truthy(out2:find("--dtype float32|float16|bfloat16", 1, true), out2)
  end)

  it("suggest the closest command, option or model (exit 2)", function()
    local code, out, err = support.pthcv("inspct", "x.pth")
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.truthy(err:find("unknown command 'inspct' (did you mean inspect?)", 1, true), err)
    code, _, err = support.pthcv("run", "--weigths", "w.pth")
    assert.are.equal(2, code)
    assert.truthy(err:find("unknown option --weigths for run (did you mean --weights?)", 1, true), err)
    code, _, err = support.pthcv("convert", "--state_dict", "x.pth", "-o", "y.npz")
    assert.are.equal(2, code)
    assert.truthy(err:find("(did you mean --state-dict?)", 1, true), err)
    code, _, err = support.pthcv("bench", "--model", "mobilenetv2")
    assert.are.equal(2, code)
    assert.truthy(err:find("unknown model 'mobilenetv2' (did you mean mobilenet_v2?)", 1, true), err)
    code, _, err = support.pthcv("convert", "x.pth", "-o", "y.npz", "--dtype", "float61")
    assert.are.equal(2, code)
    assert.truthy(err:find("--dtype takes float32, float16, bfloat16, got 'float61' (did you mean float16?)", 1, true), err)
  end)

  it("exit 2 on usage errors: missing or contradictory options, bad values", function()
    local x = support.tmpname(".npy")
    pthcv.save(x, pthcv.randn({ 1, 3, 8, 8 }, { seed = 1 }))
    local cases = {
      { { "run", "--input", x, "--output", "y.npy", "--init", "zeros" }, "--model NAME or --script FILE.lua is needed" },
      { { "run", "--model", "resnet18" }, "run needs --input X.npy and --output Y.npy" },
      { { "run", "--model", "resnet18", "--size", "0", "img.jpg" }, "--size takes a positive integer, got '0'" },
      { { "run", "--model", "resnet18", "--input", x, "--output", "y.npy" }, "no --weights: give --weights FILE, or --init" },
      { { "export", "--model", "resnet18", "-o", "m.onnx" }, "no --weights" },
      { { "run", "--model", "resnet18", "--weights", "w.pth", "--init", "zeros", "--input", x, "--output", "y.npy" },
        "give --weights or --init, not both" },
      { { "bench", "--model", "resnet18", "--shape", "1x0x8" }, "--shape takes a shape of positive sizes" },
      { { "bench", "--model", "resnet18", "--shape", "1x3x" }, "--shape takes a shape such as 1x3x224x224" },
      { { "bench", "--model", "resnet18", "--threads", "two" }, "--threads takes a positive integer" },
      { { "inspect" }, "inspect takes FILE" },
      { { "inspect", "a.pth", "b.pth" }, "inspect takes FILE" },
      { { "inspect", "a.pth", "--max-depth", "-1" }, "--max-depth takes a non-negative integer" },
      { { "inspect", "a.pth", "--json=yes" }, "option --json takes no value" },
      { { "convert", "a.pth", "-o" }, "option -o needs a value" },
      { { "models", "extra" }, "models takes no argument" },
    }
    for _, c in ipairs(cases) do
      local code, out, err = support.pthcv(unpack(c[1]))
      assert.are.equal(2, code, table.concat(c[1], " ") .. ": " .. err)
      assert.are.equal("", out)
      assert.truthy(err:find(c[2], 1, true), table.concat(c[1], " ") .. ": " .. err)
      assert.truthy(err:find("(see pthcv " .. c[1][1] .. " --help)", 1, true), err)
    end
    os.remove(x)
  end)

  it("exit 1 on runtime errors, naming the file, without pthcv's source positions", function()
    local dir = support.tmpname("-err")
    os.execute("mkdir -p " .. q(dir))
    support.write_file(dir .. "/junk.npy", "not an array")
    support.write_file(dir .. "/not_module.lua", "return 42\n")
    support.write_file(dir .. "/junk.jpg", "not an image")
    local w = dir .. "/w.safetensors"
    pthcv.save(w, pthcv.models.squeezenet1_1({ num_classes = 3 }):state_dict())
    local cases = {
      { { "run", "--model", "squeezenet1_1", "--init", "zeros", "--input", dir .. "/none.npy", "--output", dir .. "/y.npy" },
        dir .. "/none.npy" },
      { { "run", "--model", "squeezenet1_1", "--init", "zeros", "--input", dir .. "/junk.npy", "--output", dir .. "/y.npy" },
        dir .. "/junk.npy" },
      { { "run", "--model", "squeezenet1_1", "--weights", w, dir .. "/junk.jpg" }, dir .. "/junk.jpg" },
      { { "run", "--model", "squeezenet1_1", "--weights", w, "--labels", dir .. "/none.txt", support.root .. "/examples/demo.jpg" },
        dir .. "/none.txt" },
      { { "run", "--script", dir .. "/not_module.lua", "--init", "zeros", "--input", dir .. "/junk.npy", "--output", "y.npy" },
        "must return a module" },
      { { "bench", "--model", "squeezenet1_1", "--weights", dir .. "/none.pth" }, dir .. "/none.pth" },
      { { "inspect", dir .. "/junk.npy" }, "not a PyTorch file" },
      { { "convert", dir .. "/junk.npy", "-o", dir .. "/o.npz" }, dir .. "/junk.npy" },
      { { "convert", support.root .. "/examples/tiny_resnet.pth", "-o", dir .. "/o.bin" }, "unknown output format" },
      -- (the state_dict error names the file: convert once passed the path where options go)
      { { "convert", support.root .. "/spec/fixtures/proto_0.pth", "--state-dict", "-o", dir .. "/o.npz" },
        "no model weights found in " .. support.root .. "/spec/fixtures/proto_0.pth" },
    }
    for _, c in ipairs(cases) do
      local code, _, err = support.pthcv(unpack(c[1]))
      assert.are.equal(1, code, table.concat(c[1], " ") .. ": " .. err)
      assert.truthy(err:find("^pthcv: "), err)
      assert.truthy(err:find(c[2], 1, true), table.concat(c[1], " ") .. ": " .. err)
      assert_clean(err)
    end
    -- a script's own error keeps its file, line and stack: that is the user's code
    support.write_file(dir .. "/broken.lua", "local function build() error('no layers yet') end\nlocal m = build()\nreturn m\n")
    local code, _, err = support.pthcv("bench", "--script", dir .. "/broken.lua")
    assert.are.equal(1, code)
    assert.truthy(err:find("broken.lua:1: no layers yet", 1, true), err)   -- (Lua shortens long paths)
    assert.truthy(err:find("in function 'build'", 1, true), err)
    os.execute("rm -rf " .. q(dir))
  end)

  it("scan --json prints one JSON object even when the file cannot be read (exit 2)", function()
    local code, out, err = support.pthcv("scan", "--json", "/nonexistent/x.pth")
    assert.are.equal(2, code)
    local j = assert(json.decode(out), out)
    assert.are.equal("/nonexistent/x.pth", j.file)
    assert.is_false(j.safe)
    assert.truthy(j.error:find("/nonexistent/x.pth: cannot open", 1, true), j.error)
    assert.are.same({}, j.globals)
    assert.truthy(err:find("cannot open", 1, true))
    assert.are.equal(1, select(2, out:gsub("\n", "")))   -- one line
  end)
end)

describe("--weights that do not fit", function()
  local dir = support.tmpname("-fit")
  local r18 = dir .. "/r18.safetensors"
  setup(function()
    os.execute("mkdir -p " .. q(dir))
    pthcv.save(r18, pthcv.models.resnet18({ num_classes = 10 }):state_dict())
  end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  local function keys(m)
    local set = {}
    for k, t in pairs(m:state_dict()) do set[k] = t end
    return set
  end

  it("count missing, unexpected and mismatched keys, show a few, and name the zoo model they fit", function()
    local want, have = keys(pthcv.models.resnet34({ num_classes = 10 })), keys(pthcv.models.resnet18({ num_classes = 10 }))
    local missing, unexpected, mismatched = 0, 0, 0
    for k in pairs(want) do if not have[k] and not k:match("num_batches_tracked$") then missing = missing + 1 end end
    for k, t in pairs(have) do
      if not want[k] then unexpected = unexpected + 1
      elseif table.concat(t.shape, ",") ~= table.concat(want[k].shape, ",") then mismatched = mismatched + 1 end
    end
    assert.is_true(missing > 5)
    local code, _, err = support.pthcv("run", "--model", "resnet34", "--weights", r18, "--input", "x.npy", "--output", "y.npy")
    assert.are.equal(1, code)
    assert.truthy(err:find(string.format("%s does not fit resnet34: %d missing, %d unexpected, %d mismatched keys",
                                         r18, missing, unexpected, mismatched), 1, true), err)
    assert.truthy(err:find("\n  missing: layer1.2.conv1.weight, ", 1, true), err)
    assert.truthy(err:find("(" .. (missing - 5) .. " more)", 1, true), err)
    assert.truthy(err:find("these weights look like resnet18 (--model resnet18)", 1, true), err)
    assert.truthy(err:find("(--verbose lists every key)", 1, true), err)
    assert.is_true(#err < 1000, #err .. " bytes")
    assert_clean(err)
    -- --verbose: every key
    local _, _, verr = support.pthcv("run", "--model", "resnet34", "--weights", r18, "--input", "x.npy", "--output",
                                     "y.npy", "--verbose")
    local listed = verr:match("\n  missing: ([^\n]*)")
    assert.are.equal(missing, select(2, listed:gsub(", ", "")) + 1)
    assert.is_nil(verr:find("more)", 1, true))
  end)

  it("show key names from the file as printable text", function()
    local model = require "pthcv.cli.model"
    local m = pthcv.nn.Linear(2, 2)
    local list = { { "weight", pthcv.zeros({ 2, 2 }) }, { "bias", pthcv.zeros({ 2 }) }, { "x\27[2Jy\255", pthcv.zeros({ 1 }) } }
    local msg = model.mismatch_message("Linear", "w.pth", model.compare(m, list), list, false, false)
    assert.truthy(msg:find("unexpected: x\\x1b[2Jy\\xff", 1, true), msg)
    assert.is_nil(msg:find("\27", 1, true))
  end)

  it("report shape mismatches with both shapes", function()
    local code, _, err = support.pthcv("run", "--model", "resnet18", "--weights", r18, "--num-classes", "7", "--input",
                                       "x.npy", "--output", "y.npy")
    assert.are.equal(1, code)
    assert.truthy(err:find("0 missing, 0 unexpected, 2 mismatched keys", 1, true), err)
    assert.truthy(err:find("fc.weight [10, 512] in the file, [7, 512] in the model", 1, true), err)
  end)
end)

describe("--init", function()
  it("random: seeded weights, the same output every time, not the zero weights' output", function()
    local x, y1, y2, y0 = support.tmpname(".npy"), support.tmpname(".npy"), support.tmpname(".npy"), support.tmpname(".npy")
    pthcv.save(x, pthcv.randn({ 1, 3, 32, 32 }, { seed = 4 }))
    local base = { "run", "--model", "squeezenet1_1", "--num-classes", "4", "--input", x }
    local function run(out, ...)
      local args = { unpack(base) }
      for _, a in ipairs { "--output", out, ... } do args[#args + 1] = a end
      local code, _, err = support.pthcv(unpack(args))
      assert.are.equal(0, code, err)
      return pthcv.load_npy(out):totable()[1]
    end
    local a, b = run(y1, "--init", "random"), run(y2, "--init", "random")
    assert.are.same(a, b)
    local z = run(y0, "--init", "zeros")
    assert.are_not.same(a, z)
    local spread = math.max(unpack(a)) - math.min(unpack(a))
    assert.is_true(spread > 0, "random weights give distinct logits")
    local c = run(y2, "--init", "random", "--seed", "5")
    assert.are_not.same(a, c)
    for _, f in ipairs { x, y1, y2, y0 } do os.remove(f) end
  end)
end)

describe("progress", function()
  local src = support.root .. "/examples/tiny_resnet.pth"
  it("a bar on stderr when asked for (PTHCV_PROGRESS=1; a terminal gets one after 0.3 s), nothing when piped", function()
    local out = support.tmpname(".yml")
    local code, o, err = support.run("PTHCV_PROGRESS=1 luajit " .. q(support.bin) .. " convert " .. q(src)
                                     .. " --state-dict -o " .. q(out))
    assert.are.equal(0, code, err)
    assert.truthy(err:find("[##############################] 100%  writing", 1, true), err)
    assert.truthy(o:find("62 tensors written", 1, true))
    code, o, err = support.pthcv("convert", src, "--state-dict", "-o", out)
    assert.are.equal(0, code)
    assert.are.equal("", err)
    os.remove(out)
  end)
end)
