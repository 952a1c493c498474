#!/bin/bash
# The GPU check of issue 17, as one prepared script for a machine with an NVIDIA GPU (the
# `device` tool lends one to some sessions; run from the repository root):
#
#   bash benchmarks/gpu_check.sh            # writes everything under $OUT (default gpu_out/)
#
# 1. CUDA parity with the CPU's golden outputs under the golden rule, TF32 off
#    (tests/test_golden.py and tests/test_predict_batch.py with PIXELLIB_TEST_DEVICE=cuda);
# 2. latency per speed mode: the model alone and segmentImage (benchmarks/bench.py --device cuda);
# 3. predict_batch throughput at batch sizes 1 / 4 / 8 / 16 with peak GPU memory, in fp32,
#    bf16 and fp16 autocast (benchmarks/batch_throughput.py).
# Target: <= 30 ms per image end to end at 800 px on an H200 at the best batch size.
# Sized for the device tool's limits (one command <= 600 s): each step has its own timeout and
# the three add up to 540 s at most; a step that runs out is reported and the next one runs.
# Needs torch with CUDA, numpy, opencv, Pillow, safetensors, tqdm and pytest (the device
# image has them; PyAV is not needed). Record the figures in docs/benchmarks.md.
set -u -o pipefail
PY=${PYTHON:-python3}
mkdir -p "${OUT:-gpu_out}"
# Absolute: bench.py's workers run in folders of their own.
OUT=$(cd "${OUT:-gpu_out}" && pwd)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/machine.txt"

echo "== 1. parity on CUDA (TF32 off)"
PIXELLIB_TEST_DEVICE=cuda timeout 200 "$PY" -m pytest -q -p no:cacheprovider \
  tests/test_golden.py tests/test_predict_batch.py 2>&1 | tee "$OUT/parity.log" || status=1

echo "== 2. latency per mode"
timeout 160 "$PY" benchmarks/bench.py --device cuda --parts model,image --runs 3 --no-flops \
  --workdir "$OUT/bench_work" --out "$OUT/bench.md" --json "$OUT/bench.json" \
  > "$OUT/bench_stdout.md" 2> "$OUT/bench.log" || status=1
tail -n 5 "$OUT/bench.log"

echo "== 3. predict_batch throughput"
for precision in float32 bfloat16 float16; do
  timeout 60 "$PY" benchmarks/batch_throughput.py --device cuda --batch-sizes 1,4,8,16 \
    --images 16 --runs 2 --precision "$precision" 2>&1 | tee "$OUT/batch_$precision.md" \
    || status=1
done
exit $status
