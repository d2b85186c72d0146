-- graph_spec: `pthcv graph` and lua/pthcv/export/draw.lua, a picture of a
-- model; and `pthcv bench --profile --plot` (lua/pthcv/export/plot.lua).
--
-- The pictures are read back: the DOT text's node statements and its
-- residual and concat edges (resnet18: 8 blocks, 8 residual edges;
-- squeezenet1_1: 8 Fire modules, 16 edges into concatenations), Graphviz's
-- SVG (dot passes the edges' classes on) and PNG when dot is installed,
-- the .dot written with a warning when it is not; the bar chart's PNG and
-- the rows it draws.
local support = require "support"
local pthcv = require "pthcv"
local draw = require "pthcv.export.draw"
local plot = require "pthcv.export.plot"

-- {nodes = n, residual = n, concat = n, boxes = {name = true}} of DOT text
local function parse_dot(text)
  local r = { nodes = 0, residual = 0, concat = 0, edges = 0, boxes = {}, labels = {} }
  for line in text:gmatch("[^\n]+") do
    local id, label = line:match("^%s*(n%d+) %[label=<(.-)>, tooltip")
    if id then r.nodes = r.nodes + 1; r.labels[id] = label end
    if line:match("^%s*[%w]+ %-> [%w]+") then
      r.edges = r.edges + 1
      if line:match('class="residual"') then r.residual = r.residual + 1 end
      if line:match('class="concat"') then r.concat = r.concat + 1 end
    end
    local box = line:match('subgraph "cluster_([^"]+)"')
    if box then r.boxes[box] = true end
  end
  return r
end

local function png_size(path)
  local s = assert(support.read_file(path))
  assert.are.equal("\137PNG\r\n\26\n", s:sub(1, 8))
  local function u32(i) local a, b, c, d = s:byte(i, i + 3); return ((a * 256 + b) * 256 + c) * 256 + d end
  return u32(17), u32(21)
end

describe("pthcv graph", function()
  it("draws resnet18: each node's op, settings and output shape, its blocks as boxes, 8 residual edges", function()
    local path = support.tmpname(".dot")
    local c, o, e = support.pthcv("graph", "--model", "resnet18", "-o", path)
    assert.are.equal(0, c, e)
    assert.truthy(o:find(path .. ": 32 nodes, 41 edges (8 residual, 0 into concatenations)", 1, true), o)
    local r = parse_dot(assert(support.read_file(path)))
    assert.are.equal(32, r.nodes)   -- 20 convolutions (with their ReLUs and Adds), pools, Flatten, Gemm
    assert.are.equal(41, r.edges)
    assert.are.equal(8, r.residual)
    for _, box in ipairs { "layer1", "layer1.0", "layer1.1", "layer2.0", "layer3.1", "layer4", "layer4.1" } do
      assert.is_true(r.boxes[box], "no box " .. box)
    end
    local text = support.read_file(path)
    assert.truthy(text:find("<b>Conv · Relu</b><br/>7×7 /2 64 ch<br/><font color=\"#777777\">1×64×112×112</font>", 1,
                            true), text:sub(1, 2000))
    assert.truthy(text:find("<b>Conv</b><br/>1×1 /2 128 ch", 1, true)) -- a downsample
    assert.truthy(text:find("<b>Gemm</b><br/>→ 1000<br/>", 1, true))
    assert.truthy(text:find('in [shape=oval, fillcolor="#dff0d8", label=<<b>input</b><br/>1×3×224×224>];', 1, true))
    assert.truthy(text:find("label=<<b>logits</b><br/>1×1000>", 1, true))
    os.remove(path)
  end)

  it("marks squeezenet's concatenations and the example U-Net's skips, from a script and from a whole-model file",
     function()
    local m = pthcv.models.squeezenet1_1():eval()
    local path = support.tmpname(".dot")
    local info = draw.model(m, path, { input = { 1, 3, 96, 96 } })
    assert.are.equal(16, info.concat)
    assert.are.equal(16, parse_dot(support.read_file(path)).concat)
    assert.are.equal(0, info.residual)
    local upath = support.tmpname(".dot")
    local c, o, e = support.pthcv("graph", "--script", support.root .. "/examples/custom_model.lua", support.root
                                  .. "/examples/custom_model.pth", "--shape", "1x3x32x32", "-o", upath)
    assert.are.equal(0, c, e)
    local r = parse_dot(support.read_file(upath))
    assert.truthy(o:find(string.format("%d nodes, %d edges (%d residual, %d into concatenations)", r.nodes, r.edges,
                                       r.residual, r.concat), 1, true), o)
    assert.are.equal(4, r.concat)      -- two skip concatenations of two inputs
    assert.are.equal(5, r.residual)    -- five ConvBlocks
    for _, box in ipairs { "enc1", "mid", "dec2", "dec1", "attn" } do assert.is_true(r.boxes[box], box) end
    local zoo = support.zoo()
    if zoo then
      local wpath = support.tmpname(".dot")
      c, o, e = support.pthcv("graph", zoo .. "/resnet18.model.pth", "-o", wpath)
      assert.are.equal(0, c, e)
      assert.are.equal(8, parse_dot(support.read_file(wpath)).residual)
      os.remove(wpath)
      -- and exported as it is drawn
      local opath = support.tmpname(".onnx")
      c, o, e = support.pthcv("export", zoo .. "/resnet18.model.pth", "-o", opath, "--shape", "1x3x64x64")
      assert.are.equal(0, c, e)
      assert.truthy(o:find("output logits [1, 1000]", 1, true), o)
      os.remove(opath)
    end
    c, _, e = support.pthcv("graph", zoo and (zoo .. "/resnet18.pth") or (support.root .. "/examples/custom_model.pth"),
                            "-o", path)
    assert.are.equal(1, c)
    assert.truthy(e:find("holds no whole model", 1, true), e)
    c, _, e = support.pthcv("graph", "--model", "resnet18", "-o", "x.pdf")
    assert.are.equal(2, c)
    assert.truthy(e:find(".svg, .png or .dot", 1, true), e)
    os.remove(path); os.remove(upath)
  end)

  it("writes the .dot with a warning when Graphviz's dot is not installed", function()
    local bin = support.tmpname("-bin")
    os.execute("rm -rf " .. support.shell_quote(bin) .. " && mkdir -p " .. support.shell_quote(bin)
               .. " && ln -s \"$(command -v luajit)\" " .. support.shell_quote(bin) .. "/luajit")
    local path = support.tmpname(".svg")
    local c, o, e = support.run("PATH=" .. support.shell_quote(bin) .. " " .. support.shell_quote(support.bin)
                                .. " graph --model resnet18 -o " .. support.shell_quote(path))
    assert.are.equal(0, c, e)
    local dot = path:gsub("%.svg$", ".dot")
    assert.truthy(e:find("warning: Graphviz's dot is not installed: wrote " .. dot, 1, true), e)
    assert.truthy(o:find(dot .. ": 32 nodes", 1, true), o)
    assert.are.equal(8, parse_dot(support.read_file(dot)).residual)
    assert.is_nil(io.open(path, "rb"))
    os.remove(dot)
    os.execute("rm -rf " .. support.shell_quote(bin))
  end)

  if not draw.have_dot() then
    pending("Graphviz's dot is not installed (tools/install-deps installs graphviz): no SVG or PNG")
  else
    it("draws SVG and PNG with Graphviz's dot: 32 boxes and 2 ovals, 8 residual edges classed", function()
      local svg, png = support.tmpname(".svg"), support.tmpname(".png")
      local c, _, e = support.pthcv("graph", "--model", "resnet18", "-o", svg)
      assert.are.equal(0, c, e)
      local text = support.read_file(svg)
      local nodes, residual = 0, 0
      for _ in text:gmatch('<g id="node%d+" class="node">') do nodes = nodes + 1 end
      for _ in text:gmatch('<g id="edge%d+" class="edge residual">') do residual = residual + 1 end
      assert.are.equal(34, nodes)
      assert.are.equal(8, residual)
      c, _, e = support.pthcv("graph", "--model", "resnet18", "-o", png)
      assert.are.equal(0, c, e)
      local w, h = png_size(png)
      assert.is_true(w > 300 and h > 2000, w .. "x" .. h)
      os.remove(svg); os.remove(png)
    end)
  end

  it("bench --profile --plot: each module's own time as bars that add up to the pass", function()
    local rows = { { path = "(model)", ms = 10 }, { path = "features", ms = 9 }, { path = "features.0", ms = 4 },
                   { path = "features.0.0+bn+ReLU6", ms = 3.5 }, { path = "features.1", ms = 5 },
                   { path = "classifier", ms = 0.01 } }
    local bars = plot.exclusive(rows)
    local own = {}
    local total = 0
    for _, b in ipairs(bars) do own[b[1]] = b[2]; total = total + b[2] end
    -- the model's own: 10 - 9 - 0.01; features' own: 9 - 4 - 5 = 0; classifier below 0.2% of the pass
    local want = { ["(model, own)"] = 0.99, ["features.0"] = 0.5, ["features.0.0+bn+ReLU6"] = 3.5, ["features.1"] = 5 }
    assert.are.equal(4, #bars)
    for k, v in pairs(want) do assert.is_true(math.abs(own[k] - v) < 1e-9, k .. ": " .. tostring(own[k])) end
    assert.is_true(math.abs(total - 10) < 0.011)
    if not plot.have_gnuplot() then
      pending("gnuplot is not installed (tools/install-deps installs gnuplot-nox): no chart")
      return
    end
    local path = support.tmpname(".png")
    local c, o, e = support.pthcv("bench", "--model", "resnet18", "--shape", "1x3x32x32", "--runs", "2", "--profile",
                                  "--plot", path)
    assert.are.equal(0, c, e)
    local n = tonumber(o:match(path:gsub("%p", "%%%0") .. ": (%d+) modules"))
    assert.is_true(n ~= nil and n >= 5, o)
    local w, h = png_size(path)
    assert.are.equal(110 + 22 * n, h)
    assert.is_true(w >= 700)
    os.remove(path)
    c, _, e = support.pthcv("bench", "--model", "resnet18", "--plot", path)
    assert.are.equal(2, c)
    assert.truthy(e:find("--plot draws --profile's times", 1, true), e)
  end)

end)
