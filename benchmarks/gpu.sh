#!/usr/bin/env bash
# The benchmark suite on one CUDA GPU, sized (an estimate: it has never run on one) for under 8 minutes on an H100/H200.
#
# Profile `gpu` of `python -m benchmarks.run`: the CIFAR-10 JPEG copy (dataset cifar10_jpeg, decoded once into GPU
# memory: data.device cuda), bf16-mixed, speed.channels_last, speed.compile (one untimed warm-up epoch per fit and
# per bare loop), torch's default threads. Two timing regimes: small = cifar_resnet20 at batch 128, large = cifar_resnet56 at
# batch 512, 10,000 training images each, 5 interleaved rounds of our epoch vs the bare loop, cached-KD / online-KD
# vs CE, the empty-step floor, the cache build vs bare inference over all 50,000 images, a SimpleProfiler fit; then
# the whole born-again recipe (teacher + 3 students, cifar_resnet20, 3 epochs each) wall time. Writes the JSON (also
# as DOCS_DIR/data/benchmarks-gpu.json) and DOCS_DIR/benchmarks-gpu.md, docs/benchmarks.md filled from it (render it
# again with: python -m benchmarks.run --render OUT.json).
#
# Data: DISTILL_DATA must name the folder holding cifar10-jpeg.tar.gz (default: ./data, an ignored folder, then
# ../shared/data); it is extracted once into ~/.cache/distill/cifar10-jpeg.
#
# Usage: benchmarks/gpu.sh [--dry-run] [OUT.json] [DOCS_DIR]
#   --dry-run: profile gpu-dry on the CPU -- the same code path with tiny sizes and Fashion-MNIST (seconds; a test
#   runs it), so the script works the first time a device is there.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=gpu
if [[ "${1:-}" == "--dry-run" ]]; then
    profile=gpu-dry
    shift
fi
out="${1:-benchmarks/results-${profile}.json}"
docs="${2:-docs}"
if [[ -z "${DISTILL_DATA:-}" && -f data/cifar10-jpeg.tar.gz ]]; then
    export DISTILL_DATA="$PWD/data"
fi
if [[ "$profile" == gpu ]]; then
    python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: no CUDA device')"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    python -c "from distill.data import ensure_cifar10_jpeg; print('CIFAR-10 JPEG copy:', ensure_cifar10_jpeg())"
fi
start=$(date +%s)
python -m benchmarks.run --profile "$profile" --json "$out" --write-docs --docs-dir "$docs"
echo "gpu.sh: profile $profile done in $(( $(date +%s) - start )) s; result $out, page $docs/benchmarks-gpu.md"
