-- pthcv.lua: lets `require "pthcv"` work from the checkout root (luajit's
-- default package.path has ./?.lua). It puts <checkout>/lua first on
-- package.path and returns the real module, lua/pthcv/init.lua.
local src = debug.getinfo(1, "S").source
local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "."
package.loaded["pthcv"] = nil
package.path = dir .. "/lua/?.lua;" .. dir .. "/lua/?/init.lua;" .. package.path
local chunk = assert(loadfile(dir .. "/lua/pthcv/init.lua"))
local m = chunk("pthcv")
package.loaded["pthcv"] = m
return m
