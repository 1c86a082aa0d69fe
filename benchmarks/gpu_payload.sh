#!/usr/bin/env bash
# Get benchmarks/bench_gpu.py onto a lent GPU machine (/work/.library/device) within its limits.
#
# The machine has PyTorch, transformers, numpy, pandas, pyarrow and scipy for Python 3.12, no
# network, and takes at most 64 MiB of working tree per call. Our GIS stack is missing there and its
# wheels (rasterio and pyogrio each bundle GDAL) are ~60 MB zipped, so:
#   prepare   download the Python 3.12 wheels, unpack them into one folder, xz it (.whl/site312.tar.xz,
#             ~37 MB; don't strip the bundled libraries: auditwheel's libgdal breaks), and take the
#             repository's large tracked files (result PNGs, ~13 MB) out of the index for the call;
#   restore   put the index back (git reset) and drop the temporary excludes.
# Between the two, run (device tool, carry [".whl"], timeout ~420 s):
#   tar xJf .whl/site312.tar.xz -C /tmp && mkdir -p /tmp/gp && cp -r geopix_tiles /tmp/gp/ &&
#   cp -r model /tmp/gp/geopix_tiles/model && cp -r training /tmp/gp/geopix_tiles/training &&
#   export PYTHONPATH=/tmp/gp:/tmp/site312 GDAL_DATA=/tmp/site312/rasterio/gdal_data PYTHONUNBUFFERED=1 &&
#   python3 benchmarks/bench_gpu.py --out $OUT --work /tmp/work --size 12000 --deadline-s 300
# (the next one to run, after run 4 of benchmarks/results/gpu.md: --parts scene,model,cli,ceiling --model-batches 64
#  --model-modes cf --cpu-reference 0 --cli "0:0:0,0:0:0:GEOPIX_VECTOR_WORKERS=0,0:0:0", ~2 min of machine time)
# (the copy in /tmp/gp is the package laid out as installed: geopix_tiles.model is model/).
# Commit nothing between prepare and restore.
set -euo pipefail
cd "$(dirname "$0")/.."
LIST=.git/gpu_untracked.txt
case "${1:-}" in
prepare)
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
  if [ ! -f .whl/site312.tar.xz ]; then
    work=$(mktemp -d)
    for spec in rasterio==1.4.3 pyogrio==0.10.0 pyproj==3.7.1 shapely==2.2.0 geopandas==1.2.0 affine cligj click-plugins; do
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$work/wheels" "$spec"
    done
    mkdir -p "$work/site312"
    for w in "$work"/wheels/*.whl; do unzip -q -o "$w" -d "$work/site312"; done
    rm -rf "$work"/site312/*/tests "$work"/site312/geopandas/*/tests "$work/site312/pyogrio/gdal_data"
    mkdir -p .whl
    tar cf - -C "$work" site312 | xz -9 -T0 > .whl/site312.tar.xz
    rm -rf "$work"
  fi
  git ls-files -z | xargs -0 du -b | awk '$1 > 300000 {print $2}' \
    | grep -v -e default_model -e naip_sample.tif > "$LIST"
  xargs git rm --cached -q < "$LIST"
  sed 's|^|/|' "$LIST" >> .git/info/exclude
  echo "payload: $(du -b .whl/site312.tar.xz | cut -f1) bytes of wheels + $( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb | tail -1 | cut -f1) bytes of tree"
  ;;
restore)
  git reset -q
  if [ -f "$LIST" ]; then
    grep -vxF -f <(sed 's|^|/|' "$LIST") .git/info/exclude > .git/info/exclude.new || true
    mv .git/info/exclude.new .git/info/exclude
    rm "$LIST"
  fi
  git status --short | head
  ;;
*)
  echo "usage: bash benchmarks/gpu_payload.sh prepare|restore" >&2
  exit 2
  ;;
esac
