#!/usr/bin/env bash
# The CUDA checks of issues 3, 5 and 6, as one script for a machine with a GPU and no network.
#
# Here (needs cookiecutter):   bash .dev/gpu_checks.sh bake        # bakes the cuda project into .bake/
# On the GPU machine:          bash .dev/gpu_checks.sh run         # carry .bake along
# A dry run on a CPU:          DEVICE=cpu EPOCHS=1 N_TRAIN=6000 bash .dev/gpu_checks.sh run
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-20}
N_TRAIN=${N_TRAIN:-60000}  # MNIST-shaped training samples (the test split gets a sixth)
PROJECT=.bake/cuda/mnist_classifier

if [ "${1:-}" = bake ]; then
    rm -rf .bake
    cookiecutter --no-input . --output-dir .bake/cuda accelerator=cuda
    exit 0
fi

cd "$PROJECT"
N_TRAIN=$N_TRAIN python - <<'PY'
# MNIST-shaped data (60,000 train / 10,000 test by default), tiled from the shipped sample, as torchvision's IDX files.
import os
from pathlib import Path
import numpy as np
n_train = int(os.environ["N_TRAIN"])
sample = np.load("data/mnist_sample.npz")
raw = Path("/tmp/mnist60k/MNIST/raw")
raw.mkdir(parents=True, exist_ok=True)
def write(name, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    (raw / name).write_bytes(header + array.astype(np.uint8).tobytes())
for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_train // 6)):
    reps = -(-n // len(sample[f"{split}_labels"]))
    write(f"{prefix}-images-idx3-ubyte", np.tile(sample[f"{split}_images"], (reps, 1, 1))[:n])
    write(f"{prefix}-labels-idx1-ubyte", np.tile(sample[f"{split}_labels"], reps)[:n])
print(f"wrote {n_train} training images to /tmp/mnist60k")
PY
python -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
SAVE=/tmp/gpu_checks_saved
rm -rf "$SAVE"

echo "== issue 3: the cuda project trains 1 epoch with AMP, then test.py"
python train.py -d "$DEVICE" --set trainer.epochs=1 --set trainer.save_dir="$SAVE/single"
python test.py -r "$SAVE/single/mnist_classifier" -d "$DEVICE"

echo "== issue 6: torchrun, 1 process (NCCL on CUDA)"
torchrun --standalone --nproc_per_node=1 train.py -d "$DEVICE" --set trainer.epochs=1 --set trainer.save_dir="$SAVE/ddp"

echo "== issue 5: Trainer against the hand-written loop, MNIST-shaped 60k, batch 512"
MNIST60K=(--set data_loader.type=MnistDataLoader --set data_loader.args.data_dir=/tmp/mnist60k
          --set data_loader.args.download=false --set data_loader.args.batch_size=512)
for compile in off default; do
    echo "-- trainer.compile=$compile (config defaults otherwise: resident data, fused Adam, AMP)"
    python -m benchmarks.bench_trainer -d "$DEVICE" --epochs "$EPOCHS" "${MNIST60K[@]}" --set trainer.compile=$compile
done
echo "-- the DataLoader path, for comparison"
python -m benchmarks.bench_trainer -d "$DEVICE" --epochs "$EPOCHS" "${MNIST60K[@]}" --set trainer.compile=off \
    --set data_loader.args.device_resident=false --set data_loader.args.num_workers=4
