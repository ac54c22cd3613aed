#!/bin/bash
# GPU check for a machine with NVIDIA GPUs (see bench/gpu_check.py for what it shows).
# Run as root from the repository root: bash bench/gpu_check.sh [OUT]
# Needs only the machine's python3 (3.10+) and the NVIDIA driver; no network, nothing
# installed. pynvml is used when the machine has it, nvidia-smi otherwise.
# OUT (default $OUT, else ./gpu-check-out) receives report.json and the driver's raw
# answers (nvidia-smi CSV and -L, /proc entries) for use as recorded test fixtures.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-${OUT:-$here/gpu-check-out}}"
python="${PYTHON:-python3}"
echo "== $("$python" --version 2>&1); pynvml: $("$python" -c 'import pynvml; print(pynvml.__file__)' 2>/dev/null || echo 'not installed (nvidia-smi fallback)')"
command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "nvidia-smi: not found"
cd "$here"
PYTHONPATH="$here/src" exec "$python" "$here/bench/gpu_check.py" "$out"
