-- LuaRocks build of pthcv, for a LuaRocks set up for LuaJIT (the Lua side
-- uses LuaJIT's FFI). From a checkout:
--   luarocks --lua-version=5.1 make pthcv-scm-1.rockspec [--tree DIR] [--deps-mode=none]
-- (--deps-mode=none when dkjson comes from Debian's lua-dkjson rather than a
-- rock). LuaRocks' wrapper of bin/pthcv starts its configured interpreter,
-- lua5.1 on a stock Debian; bin/pthcv then runs itself under luajit.
-- The C core and the OpenCV bridge are built by the Makefile, which finds
-- OpenCV (opencv4) and libzip through pkg-config; the library is installed as
-- pthcv/libpthcv.so on package.cpath, where lua/pthcv/core.lua looks for it,
-- and the C/C++ headers (pthcv.h, pthcv_opencv.hpp) into the rock's include/
-- folder (luarocks show --rock-dir pthcv).
rockspec_format = "3.0"
package = "pthcv"
version = "scm-1"
source = {
  url = "git+https://example.invalid/pthcv.git", -- placeholder: build from a checkout with `luarocks make`
}
description = {
  summary = "Read PyTorch .pth files from LuaJIT without Python",
  detailed = [[
pthcv reads the files torch.save and torch.jit.save write (zip, legacy,
tar and TorchScript archives) without executing anything: an inert object
tree, tensors read lazily, the model weights found in common checkpoint
layouts, malicious files refused with the global they reference, and
.npy/.npz/.safetensors export.]],
  license = "MIT",
}
dependencies = {
  "lua == 5.1", -- LuaJIT 2.1
  "dkjson",
}
build = {
  type = "command",
  build_command = [[
    for p in opencv4 libzip; do
      pkg-config --exists $p || { echo "pthcv: pkg-config cannot find $p (Debian: libopencv-dev, libzip-dev)" >&2; exit 1; }
    done
    make all CFLAGS='$(CFLAGS)'
  ]],
  install_command = "mkdir -p $(PREFIX)/include && cp csrc/pthcv.h include/pthcv_opencv.hpp $(PREFIX)/include/",
  install = {
    lua = {
      ["pthcv"] = "lua/pthcv/init.lua",
      ["pthcv.cdef"] = "lua/pthcv/cdef.lua",
      ["pthcv.cli"] = "lua/pthcv/cli/init.lua",
      ["pthcv.cli.convert"] = "lua/pthcv/cli/convert.lua",
      ["pthcv.cli.detect"] = "lua/pthcv/cli/detect.lua",
      ["pthcv.cli.export"] = "lua/pthcv/cli/export.lua",
      ["pthcv.cli.lua"] = "lua/pthcv/cli/lua.lua",
      ["pthcv.cli.model"] = "lua/pthcv/cli/model.lua",
      ["pthcv.cli.options"] = "lua/pthcv/cli/options.lua",
      ["pthcv.cli.progress"] = "lua/pthcv/cli/progress.lua",
      ["pthcv.cli.read"] = "lua/pthcv/cli/read.lua",
      ["pthcv.cli.repl"] = "lua/pthcv/cli/repl.lua",
      ["pthcv.cli.run"] = "lua/pthcv/cli/run.lua",
      ["pthcv.cli.runner"] = "lua/pthcv/cli/runner.lua",
      ["pthcv.cli.show"] = "lua/pthcv/cli/show.lua",
      ["pthcv.core"] = "lua/pthcv/core.lua",
      ["pthcv.export.half"] = "lua/pthcv/export/half.lua",
      ["pthcv.export.onnx"] = "lua/pthcv/export/onnx/init.lua",
      ["pthcv.export.onnx.evaluate"] = "lua/pthcv/export/onnx/evaluate.lua",
      ["pthcv.export.onnx.graph"] = "lua/pthcv/export/onnx/graph.lua",
      ["pthcv.export.onnx.ops"] = "lua/pthcv/export/onnx/ops.lua",
      ["pthcv.export.onnx.ops_math"] = "lua/pthcv/export/onnx/ops_math.lua",
      ["pthcv.export.onnx.proto"] = "lua/pthcv/export/onnx/proto.lua",
      ["pthcv.export.onnx.trace"] = "lua/pthcv/export/onnx/trace.lua",
      ["pthcv.export.save"] = "lua/pthcv/export/save.lua",
      ["pthcv.image"] = "lua/pthcv/image/init.lua",
      ["pthcv.image.classify"] = "lua/pthcv/image/classify.lua",
      ["pthcv.image.codes"] = "lua/pthcv/image/codes.lua",
      ["pthcv.image.imagenet_classes"] = "lua/pthcv/image/imagenet_classes.lua",
      ["pthcv.jit"] = "lua/pthcv/jit/init.lua",
      ["pthcv.jit.archive"] = "lua/pthcv/jit/archive.lua",
      ["pthcv.jit.ast"] = "lua/pthcv/jit/ast.lua",
      ["pthcv.jit.calls"] = "lua/pthcv/jit/calls.lua",
      ["pthcv.jit.codegen"] = "lua/pthcv/jit/codegen.lua",
      ["pthcv.jit.compile"] = "lua/pthcv/jit/compile.lua",
      ["pthcv.jit.describe"] = "lua/pthcv/jit/describe.lua",
      ["pthcv.jit.expr"] = "lua/pthcv/jit/expr.lua",
      ["pthcv.jit.fuse"] = "lua/pthcv/jit/fuse.lua",
      ["pthcv.jit.module"] = "lua/pthcv/jit/module.lua",
      ["pthcv.jit.ops"] = "lua/pthcv/jit/ops/init.lua",
      ["pthcv.jit.ops.elementwise"] = "lua/pthcv/jit/ops/elementwise.lua",
      ["pthcv.jit.ops.index"] = "lua/pthcv/jit/ops/index.lua",
      ["pthcv.jit.ops.linalg"] = "lua/pthcv/jit/ops/linalg.lua",
      ["pthcv.jit.ops.nn"] = "lua/pthcv/jit/ops/nn.lua",
      ["pthcv.jit.ops.prim"] = "lua/pthcv/jit/ops/prim.lua",
      ["pthcv.jit.ops.scalar"] = "lua/pthcv/jit/ops/scalar.lua",
      ["pthcv.jit.ops.shape"] = "lua/pthcv/jit/ops/shape.lua",
      ["pthcv.jit.ops.tensor"] = "lua/pthcv/jit/ops/tensor.lua",
      ["pthcv.jit.report"] = "lua/pthcv/jit/report.lua",
      ["pthcv.jit.schema"] = "lua/pthcv/jit/schema.lua",
      ["pthcv.jit.specialize"] = "lua/pthcv/jit/specialize.lua",
      ["pthcv.jit.values"] = "lua/pthcv/jit/values.lua",
      ["pthcv.models"] = "lua/pthcv/models/init.lua",
      ["pthcv.models.alexnet"] = "lua/pthcv/models/alexnet.lua",
      ["pthcv.models.blocks"] = "lua/pthcv/models/blocks.lua",
      ["pthcv.models.mobilenetv2"] = "lua/pthcv/models/mobilenetv2.lua",
      ["pthcv.models.mobilenetv3"] = "lua/pthcv/models/mobilenetv3.lua",
      ["pthcv.models.resnet"] = "lua/pthcv/models/resnet.lua",
      ["pthcv.models.squeezenet"] = "lua/pthcv/models/squeezenet.lua",
      ["pthcv.models.vgg"] = "lua/pthcv/models/vgg.lua",
      ["pthcv.nn"] = "lua/pthcv/nn/init.lua",
      ["pthcv.nn.activation"] = "lua/pthcv/nn/activation.lua",
      ["pthcv.nn.args"] = "lua/pthcv/nn/args.lua",
      ["pthcv.nn.clock"] = "lua/pthcv/nn/clock.lua",
      ["pthcv.nn.containers"] = "lua/pthcv/nn/containers.lua",
      ["pthcv.nn.conv"] = "lua/pthcv/nn/conv.lua",
      ["pthcv.nn.from_module"] = "lua/pthcv/nn/from_module.lua",
      ["pthcv.nn.functional"] = "lua/pthcv/nn/functional.lua",
      ["pthcv.nn.functional_shape"] = "lua/pthcv/nn/functional_shape.lua",
      ["pthcv.nn.linear"] = "lua/pthcv/nn/linear.lua",
      ["pthcv.nn.misc"] = "lua/pthcv/nn/misc.lua",
      ["pthcv.nn.module"] = "lua/pthcv/nn/module.lua",
      ["pthcv.nn.norm"] = "lua/pthcv/nn/norm.lua",
      ["pthcv.nn.packs"] = "lua/pthcv/nn/packs.lua",
      ["pthcv.nn.plan"] = "lua/pthcv/nn/plan/init.lua",
      ["pthcv.nn.plan.match"] = "lua/pthcv/nn/plan/match.lua",
      ["pthcv.nn.plan.optimize"] = "lua/pthcv/nn/plan/optimize.lua",
      ["pthcv.nn.plan.record"] = "lua/pthcv/nn/plan/record.lua",
      ["pthcv.nn.plan.replay"] = "lua/pthcv/nn/plan/replay.lua",
      ["pthcv.nn.plan.report"] = "lua/pthcv/nn/plan/report.lua",
      ["pthcv.nn.plan.weights"] = "lua/pthcv/nn/plan/weights.lua",
      ["pthcv.nn.pooling"] = "lua/pthcv/nn/pooling.lua",
      ["pthcv.nn.release"] = "lua/pthcv/nn/release.lua",
      ["pthcv.nn.repr"] = "lua/pthcv/nn/repr.lua",
      ["pthcv.reader.inspect"] = "lua/pthcv/reader/inspect.lua",
      ["pthcv.reader.inspect_modules"] = "lua/pthcv/reader/inspect_modules.lua",
      ["pthcv.reader.npy"] = "lua/pthcv/reader/npy.lua",
      ["pthcv.reader.odict"] = "lua/pthcv/reader/odict.lua",
      ["pthcv.reader.state_dict"] = "lua/pthcv/reader/state_dict.lua",
      ["pthcv.reader.tree"] = "lua/pthcv/reader/tree.lua",
      ["pthcv.reader.values"] = "lua/pthcv/reader/values.lua",
      ["pthcv.tensor"] = "lua/pthcv/tensor/init.lua",
      ["pthcv.image.detect"] = "lua/pthcv/image/detect.lua",
      ["pthcv.image.detection_labels"] = "lua/pthcv/image/detection_labels.lua",
      ["pthcv.image.draw"] = "lua/pthcv/image/draw.lua",
      ["pthcv.image.pipeline"] = "lua/pthcv/image/pipeline.lua",
      ["pthcv.image.video"] = "lua/pthcv/image/video.lua",
      ["pthcv.models.detection.anchors"] = "lua/pthcv/models/detection/anchors.lua",
      ["pthcv.models.detection.backbones"] = "lua/pthcv/models/detection/backbones.lua",
      ["pthcv.models.detection.faster_rcnn"] = "lua/pthcv/models/detection/faster_rcnn.lua",
      ["pthcv.models.detection.fcos"] = "lua/pthcv/models/detection/fcos.lua",
      ["pthcv.models.detection.fpn"] = "lua/pthcv/models/detection/fpn.lua",
      ["pthcv.models.detection"] = "lua/pthcv/models/detection/init.lua",
      ["pthcv.models.detection.keypoint_rcnn"] = "lua/pthcv/models/detection/keypoint_rcnn.lua",
      ["pthcv.models.detection.mask_rcnn"] = "lua/pthcv/models/detection/mask_rcnn.lua",
      ["pthcv.models.detection.poolers"] = "lua/pthcv/models/detection/poolers.lua",
      ["pthcv.models.detection.retinanet"] = "lua/pthcv/models/detection/retinanet.lua",
      ["pthcv.models.detection.roi_heads"] = "lua/pthcv/models/detection/roi_heads.lua",
      ["pthcv.models.detection.rpn"] = "lua/pthcv/models/detection/rpn.lua",
      ["pthcv.models.detection.ssd"] = "lua/pthcv/models/detection/ssd.lua",
      ["pthcv.models.detection.ssdlite"] = "lua/pthcv/models/detection/ssdlite.lua",
      ["pthcv.models.detection.transform"] = "lua/pthcv/models/detection/transform.lua",
      ["pthcv.models.detection.util"] = "lua/pthcv/models/detection/util.lua",
      ["pthcv.models.segmentation.heads"] = "lua/pthcv/models/segmentation/heads.lua",
      ["pthcv.models.segmentation"] = "lua/pthcv/models/segmentation/init.lua",
      ["pthcv.ops"] = "lua/pthcv/ops.lua",
      ["pthcv.tensor.arith"] = "lua/pthcv/tensor/arith.lua",
      ["pthcv.tensor.construct"] = "lua/pthcv/tensor/construct.lua",
      ["pthcv.tensor.dispatch"] = "lua/pthcv/tensor/dispatch.lua",
      ["pthcv.tensor.element"] = "lua/pthcv/tensor/element.lua",
      ["pthcv.tensor.math"] = "lua/pthcv/tensor/math.lua",
      ["pthcv.tensor.random"] = "lua/pthcv/tensor/random.lua",
      ["pthcv.tensor.stats"] = "lua/pthcv/tensor/stats.lua",
      ["pthcv.tensor.topk"] = "lua/pthcv/tensor/topk.lua",
      ["pthcv.tensor.views"] = "lua/pthcv/tensor/views.lua",
      ["pthcv.tensor.print"] = "lua/pthcv/tensor/print.lua",
    },
    lib = {
      ["pthcv.libpthcv"] = "build/libpthcv.so",
      ["pthcv.libpthcv_imgcodecs"] = "build/libpthcv_imgcodecs.so",
      ["pthcv.libpthcv_videoio"] = "build/libpthcv_videoio.so",
    },
    bin = {
      pthcv = "bin/pthcv",
    },
  },
}
