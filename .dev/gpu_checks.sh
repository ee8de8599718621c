#!/usr/bin/env bash
# The CUDA checks of issue 17, as one script for a machine with a GPU and no network.
#
# Here (needs cookiecutter):   bash .dev/gpu_checks.sh bake        # bakes the cuda and auto projects into .bake/
# On the GPU machine:          bash .dev/gpu_checks.sh run         # carry .bake along; logs to $OUT/gpu_checks.log
#   (PATH=/opt/torch/.venv/bin:$PATH there; the whole run takes about 9 minutes, resident alone about 4)
#                              BATCHES=512 bash .dev/gpu_checks.sh resident   # the resident-data benchmarks alone
#                              bash .dev/gpu_checks.sh compile-modes   # which torch.compile mode the cuda answer
#                                                                      # should default to (off, default, reduce-overhead)
#                              DEADLINE=530 (seconds): checks that would run past it are cut short or skipped
# A dry run on a CPU:          DEVICE=cpu EPOCHS_512=1 EPOCHS_128=1 N_TRAIN=3000 bash .dev/gpu_checks.sh run
#
# Each check runs under its own time limit and a failure does not stop the others: one call of a
# lent GPU has to show everything. The summary at the end lists what failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
EPOCHS_512=${EPOCHS_512:-12}  # timed epochs per path for the device-resident benchmarks at batch 512
EPOCHS_128=${EPOCHS_128:-4}   # and at batch 128, whose epochs take four times as long
LOADER_EPOCHS=${LOADER_EPOCHS:-2}  # and for the DataLoader ones, whose epochs are slower
N_TRAIN=${N_TRAIN:-60000}  # MNIST-shaped training samples (the test split gets a sixth)
LOG=${OUT:-/tmp}/gpu_checks.log
PYTHON=${PYTHON:-python3}  # the GPU machine has python3 only
DEADLINE=${DEADLINE:-530}  # the whole script's budget: the checks are in order of importance

if [ "${1:-}" = bake ]; then
    rm -rf .bake
    for accelerator in cuda auto; do
        cookiecutter --no-input . --output-dir ".bake/$accelerator" accelerator=$accelerator || exit 1
    done
    exit 0
fi

FAILED=()
check() {  # check NAME SECONDS COMMAND...: run it from the cuda project, log it, remember a failure
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 20 ]; then
        echo "-- $name: skipped, out of time" | tee -a "$LOG"
        FAILED+=("$name (skipped, out of time)")
        return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    echo "== $name" | tee -a "$LOG"
    local started=$SECONDS
    (cd .bake/cuda/mnist_classifier && timeout "$limit" "$@") 2>&1 | tee -a "$LOG"
    local status=${PIPESTATUS[0]}
    echo "-- $name: exit $status in $((SECONDS - started)) s" | tee -a "$LOG"
    [ "$status" = 0 ] || FAILED+=("$name (exit $status)")
}

: >"$LOG"
export PYTHONUNBUFFERED=1
"$PYTHON" .dev/write_mnist_idx.py .bake/cuda/mnist_classifier/data/mnist_sample.npz /tmp/mnist60k "$N_TRAIN" | tee -a "$LOG"
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else '')" | tee -a "$LOG"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee -a "$LOG"
SAVE=/tmp/gpu_checks_saved
rm -rf "$SAVE"

MNIST60K=(--set data_loader.type=MnistDataLoader --set data_loader.args.data_dir=/tmp/mnist60k
          --set data_loader.args.download=false)
resident_benchmarks() {
    for batch in ${BATCHES:-512 128}; do
        local epochs=$EPOCHS_512
        [ "$batch" = 512 ] || epochs=$EPOCHS_128
        check "benchmark, batch $batch: the cuda defaults (resident, compile) against the practical limit" 240 \
            "$PYTHON" -m benchmarks.bench_trainer -d "$DEVICE" --epochs "$epochs" "${MNIST60K[@]}" \
            --set data_loader.args.batch_size=$batch --limit --with-metrics
        check "benchmark, batch $batch: resident data, compile off" 150 \
            "$PYTHON" -m benchmarks.bench_trainer -d "$DEVICE" --epochs "$epochs" "${MNIST60K[@]}" \
            --set data_loader.args.batch_size=$batch --set trainer.compile=off
    done
}
loader_benchmarks() {
    for batch in 512 128; do
        for compile in off default; do
            check "benchmark, batch $batch: DataLoader (4 workers), compile $compile" 180 \
                "$PYTHON" -m benchmarks.bench_trainer -d "$DEVICE" --epochs "$LOADER_EPOCHS" "${MNIST60K[@]}" \
                --set data_loader.args.batch_size=$batch --set trainer.compile=$compile \
                --set data_loader.args.device_resident=false --set data_loader.args.num_workers=4
        done
    done
}
compile_modes() {  # the cuda answer compiles with mode "default"; CUDA graphs (reduce-overhead) are untried
    for mode in off default reduce-overhead; do
        check "benchmark, batch ${BATCHES:-512}: resident data, compile $mode" 200 \
            "$PYTHON" -m benchmarks.bench_trainer -d "$DEVICE" --epochs "$EPOCHS_512" "${MNIST60K[@]}" \
            --set data_loader.args.batch_size="${BATCHES:-512}" --set trainer.compile=$mode
    done
}
cuda_run() {
    check "cuda project: 1 epoch (AMP, compile, channels-last, fused Adam, resident data)" 240 \
        "$PYTHON" train.py -d "$DEVICE" --set trainer.epochs=1 --set trainer.save_dir="$SAVE/single"
    check "cuda project: test.py on that run" 120 "$PYTHON" test.py -r "$SAVE/single/mnist_classifier" -d "$DEVICE"
    check "host time per batch of the metrics, eager and compiled" 60 "$PYTHON" ../../../.dev/bench_measures.py "$DEVICE"
}
other_runs() {
    check "torchrun, 1 process (NCCL on CUDA)" 180 \
        "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 train.py -d "$DEVICE" \
        --set trainer.epochs=1 --set trainer.save_dir="$SAVE/ddp"
    echo "== auto project: 1 epoch and test.py" | tee -a "$LOG"
    (cd .bake/auto/mnist_classifier && timeout 120 "$PYTHON" train.py --set trainer.epochs=1 --set trainer.save_dir="$SAVE/auto" &&
        timeout 60 "$PYTHON" test.py -r "$SAVE/auto/mnist_classifier") 2>&1 | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" = 0 ] || FAILED+=("auto project")
}

if [ "${1:-}" = resident ]; then  # a shorter rerun: the resident-data benchmarks alone
    resident_benchmarks
elif [ "${1:-}" = compile-modes ]; then
    compile_modes
else  # in order of importance: what is left when DEADLINE comes is skipped
    cuda_run
    BATCHES=512 resident_benchmarks
    other_runs
    BATCHES=128 resident_benchmarks
    loader_benchmarks
    check "the project's own tests, on the GPU machine's torch" 150 env OMP_NUM_THREADS=1 "$PYTHON" -m pytest -q -x -p no:cacheprovider
fi

echo "== summary: ${#FAILED[@]} failed" | tee -a "$LOG"
for failure in "${FAILED[@]}"; do echo "FAILED: $failure" | tee -a "$LOG"; done
[ "${#FAILED[@]}" = 0 ]
