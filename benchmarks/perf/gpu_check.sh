#!/usr/bin/env bash
# The GPU check on a lent GPU machine (PyTorch and JAX with CUDA, no TensorFlow, no network):
#   benchmarks/perf/gpu_check.sh [OUT]          default OUT: results/gpu-check; BACKENDS="torch jax" for both
# It installs the wheels carried in .whl/ (tunebench and its pure-Python needs; see
# benchmarks/perf/RESULTS.md for the list), finds MNIST's idx files in .gpu-data/mnist (carried,
# gzipped) or $TUNEBENCH_DATA, and runs benchmarks/perf/gpu_check.py once per backend: about 4
# minutes for torch. On a CPU, `python benchmarks/perf/gpu_check.py --dry-run` takes the same paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-results/gpu-check}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export TUNEBENCH_DATA=${TUNEBENCH_DATA:-$PWD/.gpu-data}
export PYTHONUNBUFFERED=1
for backend in ${BACKENDS:-torch}; do
  echo "== KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend python3 benchmarks/perf/gpu_check.py --out "$out/$backend"
done
