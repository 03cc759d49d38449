#!/usr/bin/env bash
# The benchmark suite on one CUDA GPU (prepared for one H100: about 5 minutes, most of it the accuracy runs).
#
# Profile `gpu` of benchmarks/run.py: the CIFAR-10 JPEG copy (dataset cifar10_jpeg: DISTILL_DATA must hold
# cifar10-jpeg.tar.gz, extracted once into ~/.cache/distill), cifar_resnet20, trainer.precision bf16-mixed,
# speed.channels_last, data decoded once onto the GPU (data.device cuda) and caches held on the GPU; batch 256,
# evaluation/cache batch 2048. It records step times, images/s, cache-build images/s, the ratios and the accuracy
# runs (5 epochs each) into the JSON file and docs/benchmarks-gpu.md.
#
# Usage: benchmarks/gpu.sh [OUT.json]   (default benchmarks/gpu.json)
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: no CUDA device')"
python -c "from distill.data import ensure_cifar10_jpeg; print('CIFAR-10 JPEG copy:', ensure_cifar10_jpeg())"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python benchmarks/run.py --profile gpu --json "${1:-benchmarks/gpu.json}" --write-docs
