-- lua/pthcv/jit/describe.lua: what print(m) and m:graph() show of a
-- ScriptModule (placeholder: refined below).
local M = {}
function M.extra_repr() return "" end
function M.graph() return {} end
return M
