-- examples/detect.lua: objects found in a picture by a torchvision detector,
-- printed and drawn (what `make demo` runs).
--   bin/pthcv lua examples/detect.lua MODEL WEIGHTS.pth PICTURE OUT.png [SCORE]
-- e.g. ssdlite320_mobilenet_v3_large ssdlite.pth examples/demo.jpg boxes.png 0.5
local pthcv = require "pthcv"

local name, weights, picture, out, score = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5] or "0.5")
if not (name and weights and picture and out) then
  io.stderr:write("usage: examples/detect.lua MODEL WEIGHTS.pth PICTURE OUT.png [SCORE]\n")
  os.exit(2)
end

local model = pthcv.models.detection.get(name)
model:load_state_dict(pthcv.state_dict(weights))
model:eval()

local img = pthcv.image.read(picture)
local dets = pthcv.detect(model, img, { score_thresh = score })
for _, d in ipairs(dets) do
  print(string.format("%-14s %.2f  (%.0f, %.0f) - (%.0f, %.0f)", d.name, d.score, d.box[1], d.box[2], d.box[3], d.box[4]))
end
pthcv.image.write(out, pthcv.image.draw_detections(img, dets))
print(string.format("%d detections with score >= %.2f drawn into %s", #dets, score, out))
