// examples/classify.cpp -- an OpenCV program that classifies an image with a
// PyTorch .pth through pthcv, embedding LuaJIT for the model code:
//
//   classify MODEL WEIGHTS.pth IMAGE [TOPK]     e.g. classify resnet18 r18.pth cat.jpg 5
//
// OpenCV reads the image; pthcv::tensor_from_mat hands the cv::Mat's pixels
// to pthcv without a copy; Lua (pthcv.models, pthcv.classify) builds the
// model, loads the weights and returns the top classes; the network input
// comes back as a 4-d cv::Mat over the tensor's memory (pthcv::mat_from_tensor).
//
// Build (after `make`, or against an installed pthcv):
//   c++ -std=c++17 examples/classify.cpp -Icsrc -Iinclude $(pkg-config --cflags --libs opencv4 luajit)
//       -Lbuild -lpthcv -Wl,-rpath,$PWD/build -o classify
// Run with LUA_PATH (and LUA_CPATH for an installed library) reaching pthcv's
// Lua modules, e.g. LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;".
#include "pthcv_opencv.hpp"

#include <opencv2/imgcodecs.hpp>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

// Lua's side: a function (model name, weights, image tensor address, k) ->
// blob tensor address, {{index, label, prob}, ...}. The image arrives as a
// pthcv_tensor * light userdata (the FFI wraps it and takes its own
// reference); the blob's address goes back as a number (exact below 2^53).
static const char *LUA_CODE = R"lua(
local ffi = require "ffi"
local pthcv = require "pthcv"
local classify = require "pthcv.image.classify"
return function(model_name, weights, image_address, k)
  local net = pthcv.models.get(model_name)
  net:load_state_dict(pthcv.state_dict(weights))
  net:eval()
  local img = pthcv.Tensor.wrap(ffi.cast("pthcv_tensor *", image_address))
  local opts = { resize = 256, size = 224, topk = k }
  local r = classify.image(net, img, opts)
  -- the input the network saw, handed back to C++ (one reference for it)
  local blob = pthcv.image.blob(img, classify.blob_options(opts))
  pthcv.C.pthcv_tensor_retain(blob.ct)
  return tonumber(ffi.cast("uintptr_t", blob.ct)), r.top
end
)lua";

static int fail(lua_State *L, const char *what)
{
    std::fprintf(stderr, "classify: %s: %s\n", what, lua_tostring(L, -1));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL WEIGHTS.pth IMAGE [TOPK]\n", argv[0]);
        return 2;
    }
    const int k = argc > 4 ? std::atoi(argv[4]) : 5;

    cv::Mat image = cv::imread(argv[3]);   // 8-bit BGR
    if (image.empty()) {
        std::fprintf(stderr, "classify: cannot read %s\n", argv[3]);
        return 1;
    }
    // no copy: the tensor views the Mat's pixels and keeps them alive
    std::unique_ptr<pthcv_tensor, void (*)(pthcv_tensor *)> tensor(pthcv::tensor_from_mat(image),
                                                                   pthcv_tensor_release);

    std::unique_ptr<lua_State, void (*)(lua_State *)> state(luaL_newstate(), lua_close);
    lua_State *L = state.get();
    luaL_openlibs(L);
    if (luaL_loadstring(L, LUA_CODE) != 0 || lua_pcall(L, 0, 1, 0) != 0)
        return fail(L, "loading pthcv");
    lua_pushstring(L, argv[1]);
    lua_pushstring(L, argv[2]);
    lua_pushlightuserdata(L, tensor.get());
    lua_pushinteger(L, k);
    if (lua_pcall(L, 4, 2, 0) != 0)
        return fail(L, "classifying");

    // the network input as a cv::Mat [1, 3, 224, 224] over the tensor's memory
    pthcv_tensor *blob = reinterpret_cast<pthcv_tensor *>((uintptr_t)lua_tonumber(L, -2));
    cv::Mat input = pthcv::mat_from_tensor(blob, pthcv::Layout::CHW);
    pthcv_tensor_release(blob);   // the Mat holds its own reference
    std::printf("input: %dx%dx%dx%d float32, mean %.4f\n", input.size[0], input.size[1], input.size[2],
                input.size[3], cv::mean(input.reshape(1, (int)input.total()))[0]);

    std::printf("%s\n", argv[3]);
    for (int i = 1;; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_isnil(L, -1))
            break;
        lua_getfield(L, -1, "index");
        lua_getfield(L, -2, "label");
        lua_getfield(L, -3, "prob");
        std::printf("  %.4f  %s (%d)\n", lua_tonumber(L, -1), lua_tostring(L, -2), (int)lua_tointeger(L, -3));
        lua_pop(L, 4);
    }
    return 0;
}
