#!/usr/bin/env bash
# geopix-tiles vs the anchors (/work/shared/anchors) in ONE invocation, same scene, same machine.
#
# usage: benchmarks/anchors_compare.sh [SCENE]     (default /tmp/geopix-bench/scene_20000.tif)
# env:   ANCHORS     anchor venvs/out/logs (default /tmp/anchors; build them as the anchors
#                    README "Rerun" says: venv-raw, venv-samgeo, venv-geoai)
#        GEOPIX_PY   python of the project venv (default /work/venv/bin/python)
#        RUNS        rounds of the light tools (default 2; round 2 runs them in reverse order)
#        ORDER, ONCE space-separated labels run every round / only in round 1 (ONCE="" for none)
#        GEOAI=0     skip geoai predict_geotiff (1 run, alone, between the rounds)
#        GEOAI_TRAIN=auto|0|1   geoai semantic_inference_on_geotiff after the rounds; auto runs it
#                    only if MemAvailable >= 22 GiB (it peaks at ~20 GB)
#        TSV         result rows (default benchmarks/results/anchors_runs.tsv, appended)
#        CAP_S       per-run wall cap (default 900)
#
# Anchors are run through the shared /work/shared/anchors/measure.sh unchanged. geopix-tiles
# runs are wrapped exactly like measure.sh does it: /usr/bin/time -v, timeout CAP_S,
# oom_score_adj=1000, OMP_NUM_THREADS=2, whole process (imports included). Only one measured
# process runs at a time. Each row also records /proc/loadavg before and after the run
# (the machine is shared) and MemAvailable before it.
#
# Row: label round scene wall_s maxrss_mib rc note load_before load_after memavail_mib utc_start
# After the runs: pixel agreement of every mask against raw_run.py's (compare_masks.py).
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=/work/shared/anchors
SCENE=${1:-/tmp/geopix-bench/scene_20000.tif}
export ANCHORS=${ANCHORS:-/tmp/anchors}
GEOPIX_PY=${GEOPIX_PY:-/work/venv/bin/python}
GEOPIX_CLI=${GEOPIX_CLI:-$(dirname "$GEOPIX_PY")/geopix-tiles}
RUNS=${RUNS:-2}
GEOAI=${GEOAI:-1}
GEOAI_TRAIN=${GEOAI_TRAIN:-auto}
TSV=${TSV:-$REPO/benchmarks/results/anchors_runs.tsv}
export CAP_S=${CAP_S:-900}
name=$(basename "$SCENE" .tif)
OUTD=$ANCHORS/out; LOGD=$ANCHORS/logs
mkdir -p "$OUTD" "$LOGD" "$(dirname "$TSV")"
[ -s "$TSV" ] || printf 'label\tround\tscene\twall_s\tmaxrss_mib\trc\tnote\tload_before\tload_after\tmemavail_mib\tutc_start\n' > "$TSV"

loadavg() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' ','; }
memavail() { awk '/MemAvailable/ {printf "%.0f", $2/1024}' /proc/meminfo; }

# time_geopix LABEL CMD... : measure.sh's wrapper for a geopix-tiles command
time_geopix() {
  local label=$1; shift
  local log="$LOGD/${label}_${name}_$(date +%H%M%S).log"
  ( export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
    /usr/bin/time -v timeout "$CAP_S" bash -c 'echo 1000 > /proc/self/oom_score_adj; exec "$@"' _ "$@" >"$log" 2>&1 )
  local rc=$?
  local wall rss note=ok
  wall=$(grep -F "Elapsed (wall clock)" "$log" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(grep -F "Maximum resident set size" "$log" | awk '{printf "%.0f", $NF/1024}')
  [ "$rc" = 124 ] && note="timeout ${CAP_S}s"
  [ "$rc" = 137 ] && note="killed (SIGKILL, OOM)"
  [ "$rc" != 0 ] && [ "$note" = ok ] && note="failed rc=$rc"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$name" "$wall" "$rss" "$rc" "$note"
}

# one LABEL ROUND : run one variant, append a row with load/mem context
one() {
  local label=$1 round=$2 lb la ma t row
  lb=$(loadavg); ma=$(memavail); t=$(date -u +%FT%TZ)
  case "$label" in
    raw-cache64) row=$(LABEL=$label GDAL_CACHEMAX=64 "$SHARED/measure.sh" raw "$SCENE" | tail -n 1) ;;
    raw)         row=$(LABEL=$label "$SHARED/measure.sh" raw "$SCENE" | tail -n 1) ;;
    samgeo|samgeo-bare|geoai|geoai-train)
                 row=$(LABEL=$label "$SHARED/measure.sh" "$label" "$SCENE" | tail -n 1) ;;
    geopix-prob|geopix-binary|geopix-ndwi0)
                 rm -f "$OUTD/${label}_${name}.tif"
                 row=$(time_geopix "$label" "$GEOPIX_PY" "$REPO/benchmarks/anchors_compare_geopix.py" \
                         "${label#geopix-}" "$SCENE" "$OUTD/${label}_${name}.tif") ;;
    geopix-cli)  rm -f "$OUTD/${label}_${name}.tif" "$OUTD/${label}_${name}.gpkg"
                 row=$(time_geopix "$label" "$GEOPIX_CLI" segment "$SCENE" -p water \
                         --out "$OUTD/${label}_${name}.gpkg" --raster "$OUTD/${label}_${name}.tif" --overwrite --quiet) ;;
    *) echo "unknown $label" >&2; return 2 ;;
  esac
  la=$(loadavg)
  # row from measure.sh / time_geopix: label scene wall rss rc note
  IFS=$'\t' read -r _l _s wall rss rc note <<<"$row"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$round" "$name" "$wall" "$rss" "$rc" "$note" "$lb" "$la" "$ma" "$t" | tee -a "$TSV"
}

echo "# $(date -u +%FT%TZ) scene=$SCENE host=$(hostname) nproc=$(nproc) load=$(loadavg) memavail_mib=$(memavail)"
# ORDER runs every round (odd rounds forward, even rounds reversed); ONCE only in round 1
read -r -a ORDER <<<"${ORDER:-raw-cache64 raw samgeo geopix-prob geopix-binary geopix-cli geopix-ndwi0}"
read -r -a ONCE <<<"${ONCE-samgeo-bare}"
for ((r = 1; r <= RUNS; r++)); do
  if (( r % 2 == 1 )); then seq=("${ORDER[@]}"); else seq=(); for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do seq+=("${ORDER[i]}"); done; fi
  (( r == 1 )) && seq+=("${ONCE[@]}")
  for label in "${seq[@]}"; do one "$label" "$r"; done
  if (( r == 1 )) && [ "$GEOAI" = 1 ]; then one geoai 1; fi
done
if [ "$GEOAI_TRAIN" = 1 ] || { [ "$GEOAI_TRAIN" = auto ] && (( $(memavail) >= 22528 )); }; then
  one geoai-train 1
else
  echo "# geoai-train skipped (GEOAI_TRAIN=$GEOAI_TRAIN, MemAvailable $(memavail) MiB)"
fi
echo "# $(date -u +%FT%TZ) done load=$(loadavg)"

echo "# mask agreement vs raw_run.py (GDAL_CACHEMAX=64 output); compare_masks.py A=raw B=other, then B's class-1 fraction"
ref="$OUTD/raw-cache64_${name}.tif"
for label in raw samgeo samgeo-bare geoai geoai-train geopix-ndwi0 geopix-binary geopix-cli geopix-prob; do
  f="$OUTD/${label}_${name}.tif"
  [ -f "$f" ] || { echo "$label: no output"; continue; }
  printf '%s: ' "$label"; "$ANCHORS/venv-raw/bin/python" "$SHARED/compare_masks.py" "$ref" "$f" 2>&1 | tail -n 1
  printf '%s (B as A): ' "$label"; "$ANCHORS/venv-raw/bin/python" "$SHARED/compare_masks.py" "$f" "$ref" 2>&1 | tail -n 1 | grep -o 'class-1 fraction.*'
done
