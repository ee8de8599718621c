"""Benchmark the default training recipe: test accuracy and training seconds over a few seeds.

    python .dev/bench_recipe.py                       # bake the template into a temp dir, seeds 1 2 3
    python .dev/bench_recipe.py --project /tmp/bake/mnist_classifier --set trainer.epochs=6

For each seed it runs ``train.py -c config.json -d cpu --set seed=S`` and ``test.py -r <run>`` in the
project folder, with OMP_NUM_THREADS=--threads. "Training seconds" is the sum of the per-epoch times
that train.py logs (``epoch k/K  train ... 1.6s``: training plus validation, without start-up and
checkpoint saving); "wall" is the whole train.py process, for reference. Extra ``--set KEY=JSON``
arguments pass through to train.py, so a recipe can be tried without editing config.json.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
# "epoch 3/8  train loss 0.1234 ... lr 0.003  1.6s" (older projects: "... (1.6s)")
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)\s.*?\s\(?(\d+(?:\.\d+)?)s\)?(?:\s+\*best)?\s*$", re.MULTILINE)
RUN_FOLDER = re.compile(r"Run folder: (\S+)")
TEST_ACCURACY = re.compile(r"test_accuracy: ([\d.]+)")


@dataclass
class SeedResult:
    seed: int
    epochs: int
    seconds: float  # sum of the logged per-epoch times
    wall: float  # the whole train.py process
    accuracy: float  # test accuracy of best.pth (last.pth if there is none)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, help="a baked project folder (default: bake the template)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS for train.py and test.py")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=JSON",
                        help="passed on to train.py; repeatable")  # fmt: skip
    parser.add_argument("--min-accuracy", type=float, default=0.975, help="target: median test accuracy")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="target: median training seconds")
    return parser.parse_args()


def bake(output_dir: Path) -> Path:
    """Bake the template with its defaults into ``output_dir``; returns the project folder."""
    try:
        from cookiecutter.main import cookiecutter
    except ImportError:
        sys.exit("error: cookiecutter is not installed; pip install cookiecutter, or pass --project PATH")
    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output_dir)))


def run(command: list[str], project: Path, threads: int) -> str:
    """Run ``command`` in ``project``; returns its output (stdout and stderr), exits if it fails."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited with {done.returncode}:\n{done.stdout[-3000:]}")
    return done.stdout


def run_seed(project: Path, seed: int, save_dir: Path, args: argparse.Namespace) -> SeedResult:
    """Train and test one seed."""
    train = [sys.executable, "train.py", "-c", "config.json", "-d", "cpu", "--set", f"seed={seed}",
             "--set", f"trainer.save_dir={save_dir}"]  # fmt: skip
    for override in args.overrides:
        train += ["--set", override]
    started = time.perf_counter()
    log = run(train, project, args.threads)
    wall = time.perf_counter() - started
    epochs = [float(seconds) for _, _, seconds in EPOCH_LINE.findall(log)]
    run_dir = RUN_FOLDER.search(log)
    if not epochs or run_dir is None:
        sys.exit(f"error: no epoch lines or run folder in train.py's output:\n{log[-3000:]}")
    report = run([sys.executable, "test.py", "-r", run_dir.group(1)], project, args.threads)
    accuracy = TEST_ACCURACY.search(report)
    if accuracy is None:
        sys.exit(f"error: no test_accuracy in test.py's output:\n{report[-3000:]}")
    return SeedResult(seed, len(epochs), sum(epochs), wall, float(accuracy.group(1)))


def summarise(results: list[SeedResult], args: argparse.Namespace) -> bool:
    """Print the medians and whether they meet the targets; returns whether both do."""
    accuracy = statistics.median(r.accuracy for r in results)
    seconds = statistics.median(r.seconds for r in results)
    accurate, fast = accuracy >= args.min_accuracy, seconds <= args.max_seconds
    print(f"median test accuracy {accuracy:.2%}  (target >= {args.min_accuracy:.1%}: {'yes' if accurate else 'NO'})")
    print(f"median training seconds {seconds:.1f}  (target <= {args.max_seconds:g} s: {'yes' if fast else 'NO'})")
    return accurate and fast


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_recipe_") as tmp:
        project = args.project.resolve() if args.project else bake(Path(tmp) / "bake")
        print(f"project: {project}  threads: {args.threads}  overrides: {' '.join(args.overrides) or '(none)'}")
        print(f"{'seed':>4}  {'epochs':>6}  {'train s':>7}  {'wall s':>6}  {'test acc':>8}")
        results = []
        for seed in args.seeds:
            result = run_seed(project, seed, Path(tmp) / "saved", args)
            results.append(result)
            print(f"{result.seed:>4}  {result.epochs:>6}  {result.seconds:>7.1f}  {result.wall:>6.1f}  "
                  f"{result.accuracy:>8.2%}", flush=True)  # fmt: skip
        return 0 if summarise(results, args) else 1


if __name__ == "__main__":
    sys.exit(main())
