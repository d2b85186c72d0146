-- lua/pthcv/jit/track.lua: the tensors operators made during a top-level
-- call of an archive's method. pthcv.jit.module releases those its result
-- does not hold when the call returns: LuaJIT's collector does not see
-- their memory, so it would pile up between calls.
--
--   track.active   a top-level call runs
--   track.created  the tensors made so far (track.n of them)
--   track.kept     values the call stored into attributes (kept alive)
local M = { active = false, n = 0, created = {}, kept = {} }

-- Notes tensor t as made by an operator (while a call is tracked); returns t.
function M.note(t)
  if M.active then
    local n = M.n + 1
    M.n = n
    M.created[n] = t
  end
  return t
end

return M
