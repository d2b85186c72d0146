-- rock_spec: the LuaRocks package and the C++ side, as a user gets them.
--   - `luarocks make pthcv-scm-1.rockspec` installs every Lua module, the
--     library, the headers and `pthcv` into a temporary tree, and the
--     installed pthcv works from there; `luarocks pack` makes a source rock,
--     and `luarocks install` of it gives a working pthcv too. LuaRocks runs
--     with its stock configuration: an empty HOME, no LUAROCKS_CONFIG (on
--     Debian its wrapper of `pthcv` then starts lua5.1, not LuaJIT);
--   - spec/c/mat_test.cpp (cv::Mat <-> tensor, pthcv_opencv.hpp) and the
--     example examples/classify.cpp compile against the installed headers
--     and library, and the example's classes and probabilities are torch's
--     (spec/fixtures/make_classify_refs.py).
local support = require "support"
local json = require "dkjson"

local function q(s) return support.shell_quote(s) end

local root = support.root
local IMG = root .. "/examples/demo.jpg"

local function check(code, out, err, what)
  assert(code == 0, (what or "command") .. " failed (" .. tostring(code) .. "):\n" .. out .. err)
  return out
end

describe("LuaRocks package", function()
  if os.getenv("PTHCV_SANITIZE") == "1" then
    pending("packaging is not checked under the sanitizers (make test does)")
    return
  end
  if support.run("command -v luarocks") ~= 0 then
    pending("luarocks is missing (tools/install-deps installs it)")
    return
  end
  local tmp = support.tmpname("-rock")
  local tree = tmp .. "/tree"
  local env   -- LUA_PATH/LUA_CPATH/PATH reaching the tree only
  -- LuaRocks as a fresh machine has it: no user configuration
  local luarocks = "HOME=" .. q(tmp .. "/home") .. " env -u LUAROCKS_CONFIG -u LUAROCKS_CONFIG_5_1 luarocks --lua-version=5.1"
  local function env_of(t)
    local lp = t .. "/share/lua/5.1/?.lua;" .. t .. "/share/lua/5.1/?/init.lua;/usr/share/lua/5.1/?.lua"
    local lc = t .. "/lib/lua/5.1/?.so"
    return "HOME=" .. q(tmp .. "/home") .. " LUA_PATH=" .. q(lp) .. " LUA_CPATH=" .. q(lc) .. " PATH="
           .. q(t .. "/bin:/usr/bin:/bin") .. " "
  end
  setup(function()
    os.execute("mkdir -p " .. q(tmp .. "/home"))
    -- a copy of the checkout's tracked files, so the build is the rock's own
    -- (support.run sends /dev/null to the last command's stdin: the pipe is grouped)
    check(support.run("mkdir -p " .. q(tmp .. "/src") .. " && cd " .. q(root)
                      .. " && { git ls-files -z | xargs -0 cp --parents -t " .. q(tmp .. "/src") .. "; }"))
    local code, out, err = support.run("cd " .. q(tmp .. "/src") .. " && MAKEFLAGS=-j4 " .. luarocks .. " --tree " .. q(tree)
                                       .. " make --deps-mode=none pthcv-scm-1.rockspec")
    check(code, out, err, "luarocks make")
    env = env_of(tree)
  end)
  teardown(function() os.execute("rm -rf " .. q(tmp)) end)

  it("lists every Lua module of the checkout", function()
    local rockspec = support.read_file(root .. "/pthcv-scm-1.rockspec")
    local _, files = support.run("cd " .. q(root) .. " && git ls-files 'lua/*.lua'")
    for f in files:gmatch("[^\n]+") do
      assert.is_truthy(rockspec:find('"' .. f .. '"', 1, true), f .. " is not in the rockspec")
    end
  end)

  it("installs a pthcv that works from the tree alone", function()
    local _, interp = support.run(luarocks .. " config lua_interpreter")
    print("# luarocks' stock interpreter: " .. interp:gsub("%s+$", ""))
    local out = check(support.run("cd / && " .. env .. "pthcv version"))
    assert.matches("^pthcv %d", out)
    out = check(support.run("cd / && " .. env .. "pthcv inspect " .. q(root .. "/examples/tiny_resnet.pth")))
    assert.matches("parameters: 11122, buffers: 250", out, 1, true)
    -- the library comes from the tree, not the checkout
    out = check(support.run("cd / && " .. env .. "luajit -e 'local p = require \"pthcv\" print(p.library_path) "
                            .. "print(p.image.read(" .. string.format("%q", IMG):gsub("'", "") .. ").shape[2])'"))
    assert.are.equal(tree .. "/lib/lua/5.1/pthcv/libpthcv.so\n400\n", out)
    -- the headers
    local _, dir = support.run(env .. luarocks .. " --tree " .. q(tree) .. " show --rock-dir pthcv")
    dir = dir:gsub("%s+$", "")
    assert.is_truthy(support.read_file(dir .. "/include/pthcv.h"))
    assert.is_truthy(support.read_file(dir .. "/include/pthcv_opencv.hpp"))
  end)

  it("packs a source rock", function()
    -- source.url is a placeholder: pack a copy of the rockspec pointing at a
    -- local clone, as a release would point at its repository
    local repo = tmp .. "/repo"
    check(support.run("git clone -q " .. q(root) .. " " .. q(repo)))
    local rs = support.read_file(root .. "/pthcv-scm-1.rockspec")
    rs = rs:gsub('url = "[^"]*"', 'url = "git+file://' .. repo .. '"', 1)
    local packdir = tmp .. "/pack"
    os.execute("mkdir -p " .. q(packdir))
    support.write_file(packdir .. "/pthcv-scm-1.rockspec", rs)
    check(support.run("cd " .. q(packdir) .. " && " .. luarocks .. " pack pthcv-scm-1.rockspec"))
    local rock = packdir .. "/pthcv-scm-1.src.rock"
    local _, list = support.run("unzip -l " .. q(rock))
    for _, f in ipairs { "pthcv-scm-1.rockspec", "csrc/opencv/bridge.cpp", "include/pthcv_opencv.hpp",
                         "lua/pthcv/image/init.lua", "Makefile" } do
      assert.matches(f, list, 1, true)
    end
    -- installed from the packed rock, as a user would
    local tree2 = tmp .. "/tree2"
    local c, o, e = support.run("cd " .. q(packdir) .. " && MAKEFLAGS=-j4 " .. luarocks .. " --tree " .. q(tree2)
                                .. " install --deps-mode=none " .. q(rock))
    check(c, o, e, "luarocks install")
    local env2 = env_of(tree2)
    local out = check(support.run("cd / && " .. env2 .. "pthcv inspect " .. q(root .. "/examples/tiny_resnet.pth")))
    assert.matches("parameters: 11122, buffers: 250", out, 1, true)
    out = check(support.run("cd / && " .. env2 .. "luajit -e 'print(require(\"pthcv\").library_path)'"))
    assert.are.equal(tree2 .. "/lib/lua/5.1/pthcv/libpthcv.so\n", out)
  end)

  describe("C++ against the installed headers", function()
    local incdir, libdir, flags
    setup(function()
      local _, dir = support.run(env .. luarocks .. " --tree " .. q(tree) .. " show --rock-dir pthcv")
      incdir = dir:gsub("%s+$", "") .. "/include"
      libdir = tree .. "/lib/lua/5.1/pthcv"
      local _, ocv = support.run("pkg-config --cflags --libs opencv4")
      local keep = {}
      for w in ocv:gmatch("%S+") do
        if w:match("^%-I") or w:match("^%-L") or w:match("^%-lopencv_core$") or w:match("^%-lopencv_imgproc$")
           or w:match("^%-lopencv_imgcodecs$") then keep[#keep + 1] = w end
      end
      local _, lj = support.run("pkg-config --cflags --libs luajit")
      flags = "-std=c++17 -Wall -Wextra -Werror -I" .. q(incdir) .. " " .. table.concat(keep, " ") .. " "
              .. lj:gsub("%s+$", "") .. " -L" .. q(libdir) .. " -lpthcv -Wl,-rpath," .. q(libdir)
    end)

    it("converts cv::Mat and tensors without copies (spec/c/mat_test.cpp)", function()
      local exe = tmp .. "/mat_test"
      check(support.run("c++ " .. q(root .. "/spec/c/mat_test.cpp") .. " -o " .. q(exe) .. " " .. flags))
      local code, out = support.run(q(exe))
      local last = out:match("([^\n]*)\n?$")
      print("# mat_test: " .. last)
      assert.are.equal(0, code, out)
      assert.matches("^%d+ passed, 0 failed$", last)
    end)

    it("builds examples/classify.cpp, which gives torch's classes", function()
      if support.run("/usr/bin/python3 -c 'import torch, torchvision, cv2'") ~= 0 then
        pending("torch, torchvision or cv2 missing")
        return
      end
      local exe = tmp .. "/classify"
      check(support.run("c++ " .. q(root .. "/examples/classify.cpp") .. " -o " .. q(exe) .. " " .. flags))
      local refs_dir = tmp .. "/refs"
      check(support.run("/usr/bin/python3 " .. q(root .. "/spec/fixtures/make_classify_refs.py") .. " " .. q(IMG)
                        .. " " .. q(refs_dir)))
      local refs = json.decode(support.read_file(refs_dir .. "/refs.json"))
      local want = refs.cases[1]   -- --resize 256 --size 224, what the example uses
      assert.are.same({ "--resize", "256", "--size", "224" }, want.args)
      local out = check(support.run("cd / && " .. env .. q(exe) .. " resnet18 " .. q(refs_dir .. "/model.pth") .. " "
                                    .. q(IMG) .. " 5"))
      assert.matches("input: 1x3x224x224 float32", out, 1, true)
      local rows = {}
      for prob, index in out:gmatch("\n  ([%d.]+)  [^\n]* %((%d+)%)") do rows[#rows + 1] = { tonumber(index), tonumber(prob) } end
      assert.are.equal(5, #rows)
      for i, t in ipairs(want.top) do
        assert.are.equal(t.index, rows[i][1])
        assert.is_true(math.abs(t.prob - rows[i][2]) <= 1e-4)
      end
    end)
  end)
end)
