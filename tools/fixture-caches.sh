# tools/fixture-caches.sh: the large fixture sets that torch writes once and
# that are kept while their generator is unchanged. Sourced by
# tools/run-specs (which exports the PTHCV_* variables the specs read) and
# by tools/write-fixtures (which only writes them, so .ci/run can do that in
# the background while the single-threaded fuzz and valgrind steps run).
#
#   write_cached DIR GENERATOR [ARG...]
#     runs `python3 GENERATOR DIR ARG...` unless DIR/.hash holds the
#     generator's sha256 (combined with the arguments' when there are any); returns 0 when DIR then holds
#     the current generator's output. A failure prints "not ok" with the
#     log's tail (the log is DIR.log) and sets fixture_failed=1.
#   write_all_cached
#     every set the suite reads (zoo, int8, TorchScript, detection; the
#     full-size Mask R-CNN too when PTHCV_LARGE=1), each unless its
#     PTHCV_ZOO/QUANT/JIT/DETECTION variable is "skip"; then exports those
#     variables as the specs expect. Sets whose Python modules are missing
#     are left out with a "#" line saying so.
fixture_failed=0

write_cached() {
  local dir=$1 generator=$2 hash
  shift 2
  hash=$(sha256sum "$generator" | cut -c1-64)
  if [ $# -gt 0 ]; then hash=$( (echo "$hash"; echo "$*") | sha256sum | cut -c1-64); fi
  if [ "$(cat "$dir/.hash" 2>/dev/null)" != "$hash" ]; then
    rm -rf "$dir"
    echo "# writing $(basename "$generator")'s fixtures into $dir (once)"
    if nice /usr/bin/python3 "$generator" "$dir" "$@" >"$dir.log" 2>&1; then
      echo "$hash" >"$dir/.hash"
    else
      echo "not ok - $generator failed (see $dir.log):"
      tail -n 20 "$dir.log" | sed 's/^/# /'
      fixture_failed=1
    fi
  fi
  [ -f "$dir/.hash" ]
}

python_has() {   # MODULE...: /usr/bin/python3 imports them all
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import $(IFS=,; echo "$*")" >/dev/null 2>&1
}

write_all_cached() {
  local root=$PWD
  local tv=0
  if python_has torch torchvision; then tv=1; fi
  # Model-zoo parity (spec/zoo_spec.lua): every pthcv.models model against
  # torchvision with random trained-like weights (~6 GB).
  if [ "${PTHCV_ZOO:-}" != skip ]; then
    if [ $tv = 1 ]; then
      if write_cached build/zoo spec/fixtures/make_zoo_fixtures.py; then export PTHCV_ZOO=$root/build/zoo; fi
    else
      echo "# torch/torchvision are not importable by /usr/bin/python3: the model-zoo parity spec does not run"
    fi
  fi
  # int8 (spec/quant_spec.lua): a CNN trained on sklearn's digits and
  # torch's own int8 models (~40 MB).
  if [ "${PTHCV_QUANT:-}" != skip ]; then
    if python_has torch torchvision sklearn; then
      if write_cached build/quant spec/fixtures/make_quant_fixtures.py; then export PTHCV_QUANT=$root/build/quant; fi
    else
      echo "# torch/torchvision/sklearn are not importable by /usr/bin/python3: the int8 specs on real data are pending"
    fi
  fi
  # TorchScript parity (spec/jit_models_spec.lua): every torchvision model
  # traced and scripted (small archives: pooled weights).
  if [ "${PTHCV_JIT:-}" != skip ] && [ $tv = 1 ]; then
    if write_cached build/jit spec/fixtures/make_jit_fixtures.py; then export PTHCV_JIT=$root/build/jit; fi
  fi
  # Detection and segmentation parity (spec/detection_spec.lua): the
  # detectors and segmenters with trained-like weights and their outputs;
  # PTHCV_LARGE=1 (make test-large) adds Mask R-CNN at full size.
  if [ "${PTHCV_DETECTION:-}" != skip ] && [ $tv = 1 ]; then
    if write_cached build/detection spec/fixtures/make_detection_fixtures.py; then
      export PTHCV_DETECTION=$root/build/detection
    fi
    if [ "${PTHCV_LARGE:-0}" = 1 ] \
       && write_cached build/detection-large spec/fixtures/make_detection_fixtures.py maskrcnn_resnet50_fpn@800; then
      export PTHCV_DETECTION_LARGE=$root/build/detection-large
    fi
  fi
  local v
  for v in PTHCV_ZOO PTHCV_QUANT PTHCV_JIT PTHCV_DETECTION; do
    if [ "${!v:-}" = skip ]; then unset "$v"; fi
  done
}
