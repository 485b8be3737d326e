#!/usr/bin/env bash
# Runs every hookgate benchmark end to end and prints markdown (also saved in bench/out/).
# bench.ingest covers issue 15's targets in one run: the two ceilings, hookgate on both backends,
# the 100-copy storm and the 100,000-delivery RSS runs.
#
#   bench/run_all.sh            # the full run (about 35 minutes on 2 cores)
#   bench/run_all.sh --quick    # a short trial of every step (about 5 minutes)
#   bench/run_all.sh --no-memory
#
# Needs: wrk (apt-get install -y wrk), PostgreSQL at 127.0.0.1:5432 (BENCH_PG_ADMIN_URL to
# change), hookgate's venv at .venv.  Installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
quick=0
memory=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-memory) memory=0 ;;
    *) echo "usage: bench/run_all.sh [--quick] [--no-memory]" >&2; exit 2 ;;
  esac
done
if [ "$quick" = 1 ]; then
  ingest=(--duration 5 --warmup 1 --repeats 1 --storm-rounds 2)
  naive=(--rounds 2)
  mem=(--memory-deliveries 10000 --memory-every 1000)
else
  ingest=(--duration 20 --warmup 3 --repeats 3 --storm-rounds 5)
  naive=(--rounds 5)
  mem=(--memory-deliveries 100000 --memory-every 5000)
fi
if [ "$memory" = 0 ]; then
  mem=(--memory-deliveries 0)
fi
mkdir -p bench/out
out="bench/out/run-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "# hookgate benchmarks: bench/run_all.sh $*"
  echo
  "$PY" -m bench.ingest "${ingest[@]}" "${mem[@]}"
  "$PY" -m bench.ingest "${ingest[@]}" --no-header --sync-commit off --storm-rounds 0 \
    --memory-deliveries 0 --targets ceiling-pg,ceiling-batch-pg,hookgate-pg-nosched
  "$PY" -m bench.naive "${naive[@]}" --no-header
} 2>&1 | tee "$out"
echo
echo "saved: $out"
