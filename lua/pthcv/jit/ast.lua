-- lua/pthcv/jit/ast.lua: TorchScript source as Lua syntax trees, through
-- the C parser (csrc/jit/parser.c, pthcv_jit_parse).
--
--   local ast = require "pthcv.jit.ast"
--   local tree = ast.parse(source, "code/__torch__/m.py")
--   -- tree.k == "MODULE"; tree[1] is its first statement; every node has
--   -- .k (kind), .line, children in [1..n], and as its kind says: .s (a
--   -- name or string), .v (a number), .op (an operator name: "add", "eq",
--   -- "not", ...; for CONST "None", "True", "False").
--
-- The node kinds and their children are pthcv.h's PTHCV_JIT_* list. The C
-- tree is walked by index (no recursion) and freed before returning.
local ffi = require "ffi"
local core = require "pthcv.core"
local C = core.C

local M = {}

local KINDS = {
  [0] = "EMPTY", "MODULE", "CLASS", "DEF", "PARAMS", "PARAM", "BLOCK", "ASSIGN", "ANNASSIGN",
  "AUGASSIGN", "EXPR", "IF", "WHILE", "FOR", "RETURN", "PASS", "BREAK", "CONTINUE", "RAISE",
  "ASSERT", "WITH", "DEL", "IMPORT", "NAME", "INT", "FLOAT", "STR", "CONST", "ATTR", "SUBSCRIPT",
  "SLICE", "CALL", "KEYWORD", "BINOP", "UNARY", "BOOLOP", "COMPARE", "IFEXP", "LIST", "TUPLE", "DICT",
}
assert(#KINDS + 1 == C.PTHCV_JIT_KIND_COUNT, "pthcv.jit.ast: node kinds drifted from pthcv.h")
M.kinds = KINDS

local OPS = {
  [0] = false, "add", "sub", "mul", "div", "floordiv", "mod", "pow", "matmul", "lshift", "rshift",
  "bitand", "bitor", "bitxor", "neg", "pos", "invert", "not", "and", "or",
  "eq", "ne", "lt", "le", "gt", "ge", "is", "isnot", "in", "notin",
}
assert(#OPS + 1 == C.PTHCV_JOP_COUNT, "pthcv.jit.ast: operators drifted from pthcv.h")
M.ops = OPS
local CONSTS = { [0] = "None", "True", "False" }

-- Parse limits (pthcv_jit_limits): max_source, max_tokens, max_nesting, max_literal.
M.limit_names = { "max_source", "max_tokens", "max_nesting", "max_literal" }

local function make_limits(opts)
  local l = ffi.new("pthcv_jit_limits")
  C.pthcv_jit_limits_init(l)
  for _, k in ipairs(M.limit_names) do
    if opts and opts[k] ~= nil then l[k] = opts[k] end
  end
  return l
end

local function convert(nodes, count)
  local t = {}
  for i = 0, count - 1 do
    local n = nodes[i]
    local kind = KINDS[n.kind]
    local x = { k = kind, line = n.line }
    if kind == "NAME" or kind == "ATTR" or kind == "KEYWORD" or kind == "PARAM" or kind == "DEF"
       or kind == "CLASS" or kind == "IMPORT" then
      x.s = ffi.string(n.s, n.len)
    elseif kind == "STR" then
      x.s = ffi.string(n.s, n.len)
    elseif kind == "INT" then
      x.v = tonumber(n.i)
    elseif kind == "FLOAT" then
      x.v = tonumber(n.f)
    elseif kind == "CONST" then
      x.op = CONSTS[n.op]
    elseif n.op ~= 0 then
      x.op = OPS[n.op]
    end
    t[i] = x
  end
  for i = 0, count - 1 do
    local x, k, j = t[i], 0, nodes[i].first
    while j >= 0 do
      k = k + 1
      x[k] = t[j]
      j = nodes[j].next
    end
  end
  return t[0]
end

-- ast.parse(source, name [, limits]) -> the MODULE node. Errors name the
-- file and line: "pthcv: code/__torch__/m.py:12: expected ')', found 'x'".
function M.parse(source, name, limits)
  local a = C.pthcv_jit_parse(source, #source, name, make_limits(limits))
  if a == nil then core.fail("cannot parse " .. tostring(name)) end
  local count = ffi.new("int32_t[1]")
  local ok, tree = pcall(convert, C.pthcv_jit_ast_nodes(a, count), count[0])
  C.pthcv_jit_ast_free(a)
  if not ok then error(tree, 0) end
  return tree
end

-- An expression node as source-like text, for messages and listings
-- (dotted names, calls, subscripts and literals; "..." for the rest).
function M.text(e)
  local k = e.k
  if k == "NAME" then return e.s end
  if k == "ATTR" then return M.text(e[1]) .. "." .. e.s end
  if k == "INT" or k == "FLOAT" then return tostring(e.v) end
  if k == "STR" then return string.format("%q", e.s) end
  if k == "CONST" then return e.op end
  if k == "SUBSCRIPT" then return M.text(e[1]) .. "[" .. M.text(e[2]) .. "]" end
  if k == "TUPLE" or k == "LIST" then
    local parts = {}
    for i = 1, #e do parts[i] = M.text(e[i]) end
    return (k == "TUPLE" and "(" or "[") .. table.concat(parts, ", ") .. (k == "TUPLE" and ")" or "]")
  end
  if k == "CALL" then return M.text(e[1]) .. "(...)" end
  return "..."
end

return M
