-- The TorchScript source parser (csrc/jit/, pthcv.jit.ast): the grammar
-- python_print.cpp writes, errors that name the file and line, and every
-- limit named when reached.
local support = require "support"
local ast = require "pthcv.jit.ast"

local function parse(src, limits) return ast.parse(src, "code/__torch__/m.py", limits) end

local function fails(src, pattern, limits)
  local ok, err = pcall(parse, src, limits)
  assert.is_false(ok, "parsed: " .. src)
  assert.is_truthy(tostring(err):find(pattern, 1, false), "message: " .. tostring(err) .. "\nexpected: " .. pattern)
  return err
end

-- the expression of `x = <e>`
local function expr(e) return parse("x = " .. e .. "\n")[1][2] end

describe("pthcv.jit parser", function()
  it("reads a module class as python_print writes it", function()
    local src = support.read_file(support.root .. "/spec/fuzz/jit_seeds/classes.py")
    local m = parse(src)
    assert.are.equal("MODULE", m.k)
    local cls = m[1]
    assert.are.equal("CLASS", cls.k)
    assert.are.equal("Conv2d", cls.s)
    assert.are.equal("Module", cls[1][1].s)
    local body = cls[2]
    assert.are.equal("ASSIGN", body[1].k)
    assert.are.same({ "weight", "bias" }, { body[1][2][1].s, body[1][2][2].s })
    local def
    for _, st in ipairs(body) do if st.k == "DEF" then def = st end end
    assert.are.equal("forward", def.s)
    assert.are.equal(10, def.line)
    assert.are.same({ "self", "input" }, { def[1][1].s, def[1][2].s })
    assert.are.equal("__torch__.torch.nn.modules.conv.___torch_mangle_1.Conv2d", ast.text(def[1][1][1]))
    assert.are.equal("Tensor", def[2].s)
    assert.are.equal("NamedTuple", m[2][1][1].s)
  end)

  it("reads every construct of the seeds", function()
    for _, name in ipairs { "control.py", "exprs.py" } do
      local m = parse(support.read_file(support.root .. "/spec/fuzz/jit_seeds/" .. name))
      assert.are.equal("MODULE", m.k)
    end
  end)

  it("gives Python's operator precedence", function()
    local e = expr("a + b * c ** -d")
    assert.are.equal("add", e.op)
    assert.are.equal("mul", e[2].op)
    assert.are.equal("pow", e[2][2].op)
    assert.are.equal("neg", e[2][2][2].op)
    e = expr("not a == b and c or d")
    assert.are.equal("or", e.op)
    assert.are.equal("and", e[1].op)
    assert.are.equal("not", e[1][1].op)
    assert.are.equal("eq", e[1][1][1].op)
    e = expr("a is not None")
    assert.are.equal("isnot", e.op)
    e = expr("a not in b")
    assert.are.equal("notin", e.op)
    e = expr("-2 ** 2")
    assert.are.equal("UNARY", e.k)      -- -(2 ** 2), as Python
    e = expr("1 if c else 2")
    assert.are.equal("IFEXP", e.k)
  end)

  it("reads literals exactly", function()
    assert.are.equal(-2 ^ 63, expr("-9223372036854775808").v)
    assert.are.equal(9223372036854775807, expr("9223372036854775807").v)
    assert.are.equal(1e-05, expr("1.0000000000000001e-05").v)
    assert.are.equal(0.10000000000000001, expr("0.10000000000000001").v)
    assert.are.equal(0, expr("0.").v)
    assert.are.equal("FLOAT", expr("0.").k)
    assert.are.equal(31, expr("0x1f").v)
    assert.are.equal("a\tb\"c'\\AA\n", expr([["a\tb\"c\'\\\101\x41\n"]]).s)
    assert.are.equal("ab", expr([["a" 'b']]).s)
    assert.are.equal("None", expr("None").op)
    local t = expr("(1,)")
    assert.are.equal("TUPLE", t.k)
    assert.are.equal(1, #t)
    local d = expr([[{"a": 1, "b": [2, 3]}]])
    assert.are.equal("DICT", d.k)
    assert.are.equal(4, #d)
  end)

  it("reads calls, keywords, subscripts and slices", function()
    local c = expr("torch.conv2d(x, w, None, [1, 1], padding=[0, 0], groups=1, )")
    assert.are.equal("CALL", c.k)
    assert.are.equal("torch.conv2d", ast.text(c[1]))
    assert.are.equal("KEYWORD", c[6].k)
    assert.are.equal("groups", c[7].s)
    local s = expr("x[:, 1:-1:2]")
    assert.are.equal("SUBSCRIPT", s.k)
    assert.are.equal("TUPLE", s[2].k)
    assert.are.equal("SLICE", s[2][1].k)
    assert.are.equal("EMPTY", s[2][1][1].k)
    assert.are.equal(-1, s[2][2][2].v)
  end)

  it("reads blocks, elif chains and tuple targets", function()
    local m = parse("if a:\n  x = 1\nelif b:\n  x = 2\nelse:\n  pass\nfor i in range(3):\n  a, b, = t\nwhile c: break\n")
    local f = m[1]
    assert.are.equal("IF", f.k)
    assert.are.equal("IF", f[3][1].k)
    assert.are.equal("PASS", f[3][1][3][1].k)
    assert.are.equal("FOR", m[2].k)
    assert.are.equal("TUPLE", m[2][3][1][1].k)
    assert.are.equal("WHILE", m[3].k)
    assert.are.equal("BREAK", m[3][2][1].k)
  end)

  it("names the file and line of a syntax error", function()
    fails("x = 1\n  y = 2\n", "code/__torch__/m.py:2: unexpected indent")
    fails("if a:\n    x = 1\n  y = 2\n", "m.py:3: unindent does not match any outer indentation level")
    fails("x = \"abc\n", "m.py:1: unterminated string literal")
    fails("x = 1\ny = (1,\nz = 2\n", "m.py:2: a bracket opened here is never closed")
    fails("x = 1)\n", "m.py:1: unmatched '%)'")
    fails("def f(:):\n  pass\n", "m.py:1: expected a parameter name, found ':'")
    fails("x = 1 +\n", "m.py:1: expected an expression, found end of line")
    fails("x = $\n", "m.py:1: unexpected character '$'")
    fails("x = \"\\q\"\n", "m.py:1: unknown escape '\\q'")
    fails("x = 9223372036854775808\n", "integer literal 9223372036854775808 out of the 64%-bit range")
    fails("x = 99999999999999999999\n", "integer literal out of the 64%-bit range")
    fails("x = \"a\0\"\n", "NUL byte in a string literal")
    fails("x = 1\0\n", "NUL byte in the source")
    fails("x = 1\nelse:\n  pass\n", "m.py:2: expected a statement")
    fails("f(a=1, 2)\n", "positional argument follows a keyword argument")
    fails("1 = x\n", "cannot assign to this expression")
  end)

  it("refuses what torch's printer never writes, by name", function()
    fails("f = lambda: 1\n", "m.py:1: lambda expressions are not supported")
    fails("x = [i for i in y]\n", "comprehensions are not supported")
    fails("try:\n  pass\nexcept:\n  pass\n", "try statements are not supported")
    fails("@dec\ndef f():\n  pass\n", "decorators are not supported")
    fails("global x\n", "global statements are not supported")
    fails("def f():\n  yield 1\n", "m.py:2: generators are not supported")
    fails("f(*a)\n", "%*args and %*%*kwargs arguments are not supported")
    fails("def f(*a):\n  pass\n", "positional%-only parameters are not supported")
    fails("x = a < b < c\n", "chained comparisons")
    fails("x = \"\"\"doc\"\"\"\n", "triple%-quoted strings are not supported")
    fails("x = 1j\n", "complex literals are not supported")
    fails("x = b'abc'\n", "string prefixes")
    fails("x = {1, 2}\n", "set displays are not supported")
    fails("x = ^foo(1)\n", "calls of Python functions")
    fails("from os import system\n", "from%-imports are not supported")
    fails("while a:\n  pass\nelse:\n  pass\n", "else blocks of loops are not supported")
    fails("x = ...\n", "the ellipsis")
  end)

  it("names each limit when it is reached", function()
    fails(string.rep("x = 1\n", 100), "m.py: 600 bytes of source, more than the limit of 64 %(max_source%)", { max_source = 64 })
    fails("x = " .. string.rep("(", 30) .. "1" .. string.rep(")", 30) .. "\n", "deeper than 20 %(max_nesting%)", { max_nesting = 20 })
    local deep = {}
    for i = 0, 25 do deep[#deep + 1] = string.rep(" ", i) .. "if a:\n" end
    deep[#deep + 1] = string.rep(" ", 26) .. "pass\n"
    fails(table.concat(deep), "m.py:%d+: blocks nested deeper than 20 %(max_nesting%)", { max_nesting = 20 })
    fails("x = " .. string.rep("-", 40) .. "a\n", "nested deeper than 20 %(max_nesting%)", { max_nesting = 20 })
    fails("x = " .. string.rep("not ", 40) .. "a\n", "nested deeper than 20 %(max_nesting%)", { max_nesting = 20 })
    fails("x = f(" .. string.rep("g(", 30) .. string.rep(")", 31) .. "\n", "deeper than 20 %(max_nesting%)", { max_nesting = 20 })
    fails(string.rep("x = 1\n", 100), "more than 50 tokens %(max_tokens%)", { max_tokens = 50 })
    fails("x = \"" .. string.rep("a", 100) .. "\"\n", "longer than 10 bytes %(max_literal%)", { max_literal = 10 })
    fails("x = \"aaaaaaaa\" \"bbbbbbbb\"\n", "longer than 10 bytes %(max_literal%)", { max_literal = 10 })
    -- the default depth holds python_print's deepest nesting with room
    local ok = pcall(parse, "x = " .. string.rep("(", 90) .. "1" .. string.rep(")", 90) .. "\n")
    assert.is_true(ok)
    assert.has_error(function() parse("x = 1\n", { max_nesting = 300 }) end)
  end)
end)
