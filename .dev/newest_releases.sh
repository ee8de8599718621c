#!/usr/bin/env bash
# The default project on the newest release of everything it depends on, as its users get it today:
# bake it (with the template's own cookiecutter, from .ci/run's environment or this machine's), make a
# brand-new virtual environment, install the project with `pip install --upgrade --upgrade-strategy eager`
# (so nothing older that happens to satisfy a range is kept), print the versions it got, then run the
# project's own suite. A failure here is a release that breaks generated projects: fix it, or give that
# dependency an upper bound in the template's pyproject.toml with the reason in a comment.
#
#   bash .dev/newest_releases.sh            # work folder: .bake/newest (git-ignored)
#   PIP_ARGS="--index-url URL" bash ...     # extra arguments for pip (a torch index, for example)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=.bake/newest
COOKIECUTTER=${COOKIECUTTER:-$(command -v cookiecutter || echo .venv-ci/bin/cookiecutter)}
rm -rf "$WORK"
"$COOKIECUTTER" --no-input . --output-dir "$WORK"
python3 -m venv "$WORK/venv"
# shellcheck disable=SC1091
source "$WORK/venv/bin/activate"
cd "$WORK/mnist_classifier"
# shellcheck disable=SC2086
pip install --upgrade --upgrade-strategy eager ${PIP_ARGS:-} pip -e ".[dev,export,plot]"
echo "--- versions used"
pip list --format=freeze | grep -iE '^(torch|torchvision|numpy|tensorboard|tqdm|pytest|ruff|onnx|onnxscript|onnxruntime|matplotlib|pre-commit|pre-commit-hooks)=='
echo "--- the project's own suite"
OMP_NUM_THREADS=1 python -m pytest -q -p no:cacheprovider
