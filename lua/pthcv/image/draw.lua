-- lua/pthcv/image/draw.lua: detections and segmentations drawn on images
-- with OpenCV (csrc/opencv/draw.cpp): pthcv.image.draw_detections and
-- pthcv.image.draw_segmentation, plus the primitives they use.
--
--   local img = pthcv.image.read("street.jpg")
--   local dets = pthcv.detect(model, img, { score_thresh = 0.5 })
--   pthcv.image.write("out.png", pthcv.image.draw_detections(img, dets))
--
-- draw_detections(img, dets [, opts]) -> a new image (img is not changed):
-- each detection's mask tinted in its class colour, its box, and a label
-- "name 0.93" on a filled tag in that colour (black or white text, whichever
-- reads better), keypoints as dots joined by the COCO skeleton. Colours are
-- distinct per class (hues spaced by the golden angle) and the same in
-- every picture. opts: thickness (box lines; default from the image size),
-- font_scale, show_scores = true, mask_alpha = 0.45, mask_threshold = 0.5,
-- color = fn(label) -> {b, g, r}.
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local C = core.C

local M = {}

local FONT = 0          -- cv::FONT_HERSHEY_SIMPLEX
local LINE_AA = 16

-- COCO's person skeleton: pairs of keypoints (1-based, the models' order)
M.COCO_SKELETON = { { 16, 14 }, { 14, 12 }, { 17, 15 }, { 15, 13 }, { 12, 13 }, { 6, 12 }, { 7, 13 }, { 6, 7 },
                    { 6, 8 }, { 7, 9 }, { 8, 10 }, { 9, 11 }, { 2, 3 }, { 1, 2 }, { 1, 3 }, { 2, 4 }, { 3, 5 },
                    { 4, 6 }, { 5, 7 } }

-- a BGR colour per class: hues 137.5 degrees apart, saturated, bright
function M.class_color(label)
  local h = (label * 137.508) % 360 / 60
  local s, v = 0.75, 0.95
  local i = math.floor(h)
  local f = h - i
  local p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  local rgb = ({ { v, t, p }, { q, v, p }, { p, v, t }, { p, q, v }, { t, p, v }, { v, p, q } })[i % 6 + 1]
  return { math.floor(rgb[3] * 255 + 0.5), math.floor(rgb[2] * 255 + 0.5), math.floor(rgb[1] * 255 + 0.5) }
end

local color_box = ffi.new("double[4]")
local function col(c)
  color_box[0], color_box[1], color_box[2], color_box[3] = c[1], c[2], c[3], c[4] or 255
  return color_box
end

local function check(status, what) if status ~= 0 then core.fail(what) end end

local function ipos(v) return math.floor(v + 0.5) end

-- ---- primitives (in place) -------------------------------------------------------------------
function M.rectangle(img, x1, y1, x2, y2, color, thickness)
  check(C.pthcv_draw_rectangle(img.ct, ipos(x1), ipos(y1), ipos(x2), ipos(y2), col(color), thickness or 2, LINE_AA),
        "draw rectangle")
end
function M.line(img, x1, y1, x2, y2, color, thickness)
  check(C.pthcv_draw_line(img.ct, ipos(x1), ipos(y1), ipos(x2), ipos(y2), col(color), thickness or 2, LINE_AA),
        "draw line")
end
function M.circle(img, x, y, radius, color, thickness)
  check(C.pthcv_draw_circle(img.ct, ipos(x), ipos(y), radius, col(color), thickness or -1, LINE_AA), "draw circle")
end
function M.text(img, s, x, y, scale, color, thickness)
  check(C.pthcv_draw_text(img.ct, s, ipos(x), ipos(y), FONT, scale or 0.5, col(color), thickness or 1, LINE_AA),
        "draw text")
end
local size_box = ffi.new("int32_t[3]")
-- width, height, baseline of a text
function M.text_size(s, scale, thickness)
  check(C.pthcv_text_size(s, FONT, scale or 0.5, thickness or 1, size_box), "text size")
  return size_box[0], size_box[1], size_box[2]
end
-- tints the pixels where mask [H, W] > threshold: img * (1 - alpha) + color * alpha
function M.blend_mask(img, mask, color, alpha, threshold)
  check(C.pthcv_blend_mask(img.ct, mask.ct, threshold or 0.5, col(color), alpha or 0.45), "blend mask")
end

-- the box of a text tag whose top-left corner is wanted at (x, y), moved
-- inside the image: x, y, width, height, and the text's height and padding
local function tag_box(img, s, x, y, scale, thickness)
  local w, h, base = M.text_size(s, scale, thickness)
  local H, W = img.shape[1], img.shape[2]
  local pad = math.max(2, math.floor(h / 4))
  local bw, bh = w + 2 * pad, h + base + pad
  x = math.max(0, math.min(x, W - bw))
  y = math.max(0, math.min(y, H - bh))
  return x, y, bw, bh, h, pad
end

-- a text tag: a filled box in `color` with the text in black or white, at
-- (x, y) its top-left corner, kept inside the image
function M.tag(img, s, x, y, color, scale, thickness)
  local bw, bh, h, pad
  x, y, bw, bh, h, pad = tag_box(img, s, x, y, scale, thickness)
  M.rectangle(img, x, y, x + bw, y + bh, color, -1)
  local luma = 0.114 * color[1] + 0.587 * color[2] + 0.299 * color[3]
  local ink = luma > 140 and { 0, 0, 0 } or { 255, 255, 255 }
  M.text(img, s, x + pad, y + pad + h, scale, ink, thickness)
end

-- ---- detections --------------------------------------------------------------------------------
local function writable_copy(img)
  if not Tensor.is(img) or img.ndim ~= 3 or img.dtype ~= "uint8" or img.shape[3] ~= 3 then
    error("pthcv.image.draw_detections: the image must be uint8 [H, W, 3] (BGR), got " .. tostring(img), 3)
  end
  return img:clone()
end

-- Where each detection's tag goes, best detection first: above the box's
-- top-left corner, else inside it at the top, else below the box, else
-- inside it at the bottom; the first of these that overlaps no tag placed
-- before it (the first candidate when every one does). So a box that
-- overlaps a better one keeps a readable tag.
local function overlaps(a, b)
  return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h
end
local function place_tags(img, dets, opts, scale, thickness)
  local best_first = {}
  for i, d in ipairs(dets) do best_first[i] = d end
  table.sort(best_first, function(a, b) return (a.score or 0) > (b.score or 0) end)
  local placed = {}
  for _, d in ipairs(best_first) do
    local s = d.name or ("class " .. tostring(d.label))
    if opts.show_scores ~= false and d.score then s = string.format("%s %.2f", s, d.score) end
    local x0, y0, x1, y1 = ipos(d.box[1]), ipos(d.box[2]), ipos(d.box[3]), ipos(d.box[4])
    local _, _, bw, bh = tag_box(img, s, x0, y0, scale, thickness)
    local wanted = { { x0, y0 - bh }, { x0, y0 }, { x0, y1 }, { x0, y1 - bh } }
    local choice
    for _, p in ipairs(wanted) do
      if p[2] >= 0 or p == wanted[#wanted] then
        local x, y = tag_box(img, s, p[1], p[2], scale, thickness)
        local t = { text = s, label = d.label, x = x, y = y, w = bw, h = bh }
        choice = choice or t
        local free = true
        for _, q in ipairs(placed) do
          if overlaps(t, q) then free = false; break end
        end
        if free then choice = t; break end
      end
    end
    placed[#placed + 1] = choice
  end
  return placed
end

function M.draw_detections(img, dets, opts)
  opts = opts or {}
  local out = writable_copy(img)
  local H, W = out.shape[1], out.shape[2]
  local unit = math.max(1, math.min(H, W) / 400)
  local thickness = opts.thickness or math.max(1, math.floor(2 * unit + 0.5))
  local scale = opts.font_scale or 0.5 * unit
  local text_thickness = math.max(1, math.floor(unit + 0.5))
  local color = opts.color or M.class_color
  -- masks first, then boxes, then tags on top: lowest scores first, so the
  -- best detections are drawn last and stay readable
  local order = {}
  for i = #dets, 1, -1 do order[#order + 1] = dets[i] end
  for _, d in ipairs(order) do
    if d.mask then M.blend_mask(out, d.mask, color(d.label), opts.mask_alpha or 0.45, opts.mask_threshold or 0.5) end
  end
  for _, d in ipairs(order) do
    local c = color(d.label)
    M.rectangle(out, d.box[1], d.box[2], d.box[3], d.box[4], c, thickness)
    if d.keypoints then M.keypoints(out, d.keypoints, c, thickness) end
  end
  local tags = place_tags(out, dets, opts, scale, text_thickness)
  for i = #tags, 1, -1 do
    local t = tags[i]
    M.tag(out, t.text, t.x, t.y, color(t.label), scale, text_thickness)
  end
  return out
end

-- keypoints {{x, y, score}, ...}: dots where the score is > 0, and the
-- COCO skeleton between such pairs (in place)
function M.keypoints(img, kps, color, thickness)
  local function visible(k) return k and (k[3] == nil or k[3] > 0) end
  if #kps == 17 then
    for _, pair in ipairs(M.COCO_SKELETON) do
      local a, b = kps[pair[1]], kps[pair[2]]
      if visible(a) and visible(b) then M.line(img, a[1], a[2], b[1], b[2], color, thickness) end
    end
  end
  for _, k in ipairs(kps) do
    if visible(k) then M.circle(img, k[1], k[2], thickness + 2, { 255, 255, 255 }) ; M.circle(img, k[1], k[2], thickness + 1, color) end
  end
end

-- ---- segmentation ------------------------------------------------------------------------------
-- draw_segmentation(img, seg [, opts]) -> a new image: each class but the
-- background (label 0) tinted in its colour, and a legend of the classes
-- present (seg: what pthcv.segment returns). opts: alpha = 0.5, color, legend = true
function M.draw_segmentation(img, seg, opts)
  opts = opts or {}
  local out = writable_copy(img)
  local color = opts.color or M.class_color
  local H, W = out.shape[1], out.shape[2]
  local mask = Tensor.zeros({ H, W }, "uint8")
  local classes = seg.classes:contiguous() -- referenced while cp points into it
  local cp, mp = classes:data(), mask:data()
  local unit = math.max(1, math.min(H, W) / 400)
  local y = math.floor(4 * unit)
  for _, p in ipairs(seg.present) do
    if p.label ~= 0 then
      for i = 0, H * W - 1 do mp[i] = cp[i] == p.label and 1 or 0 end
      M.blend_mask(out, mask, color(p.label), opts.alpha or 0.5, 0.5)
    end
  end
  if opts.legend ~= false then
    for _, p in ipairs(seg.present) do
      if p.label ~= 0 then
        local pct = 100 * p.pixels / (H * W)
        local s = pct < 1 and (p.name .. " <1%") or string.format("%s %.0f%%", p.name, pct)
        local _, th, base = M.text_size(s, 0.5 * unit, math.max(1, math.floor(unit + 0.5)))
        M.tag(out, s, math.floor(4 * unit), y, color(p.label), 0.5 * unit, math.max(1, math.floor(unit + 0.5)))
        y = y + th + base + 3 * math.max(2, math.floor(th / 4))
      end
    end
  end
  return out
end

return M
