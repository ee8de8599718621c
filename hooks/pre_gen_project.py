"""Refuse answers that would generate a broken project, before anything is written.

The checks are plain functions so that tests can import this file and call them; only ``main``
reads the answers, which cookiecutter renders into it as JSON data.
"""

import json
import keyword
import re
import sys
from typing import Any

# Modules the generated project imports, and its own top-level names: a project folder named like
# one of them shadows it for anything run from the parent folder (pytest, python -m, notebooks).
PROJECT_IMPORTS = frozenset(
    {
        "torch", "torchvision", "numpy", "tqdm", "tensorboard", "pytest", "ruff", "setuptools",
        "onnx", "onnxruntime", "onnxscript", "matplotlib", "optuna", "mlflow", "wandb", "sqlalchemy",
        "base", "data_loader", "model", "trainer", "logger", "utils", "parse_config", "inference", "sweeps",
        "benchmarks", "scripts", "train", "test", "predict", "export", "plot", "sweep", "tests", "config", "data",
        "saved", "docs",
    }
)  # fmt: skip
SLUG_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
# The slug names a folder (and runs under saved/), so it stays well inside every file system's limits.
MAX_SLUG_LENGTH = 64
FREE_TEXT_FIELDS = ("project_name", "author", "description")
# Written into one-line package metadata fields: a line break there makes setuptools warn (Summary) or
# cuts the METADATA headers short, so an installed project loses its Requires-Dist (Author).
ONE_LINE_FIELDS = ("author", "description")
LINE_BREAKS = "\n\x85\u2028\u2029"  # the ones free text may otherwise hold (the rest are control characters)


def suggest_slug(text: str) -> str:
    """A valid slug close to ``text``, for error messages."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "my_project"
    return f"my_{slug}" if slug[0].isdigit() else slug


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` cannot name the project folder, or None when it can."""
    if len(slug) > MAX_SLUG_LENGTH:
        shown = slug[:20] + "..."
        return f"project_slug {shown!r} is {len(slug)} characters long; answer a name of at most {MAX_SLUG_LENGTH}"
    if not SLUG_PATTERN.fullmatch(slug):
        return (
            f"project_slug {slug!r} is not a lowercase Python identifier (a-z, 0-9 and _, not starting "
            f"with a digit); answer e.g. {suggest_slug(slug)!r}"
        )
    if keyword.iskeyword(slug) or keyword.issoftkeyword(slug):
        return f"project_slug {slug!r} is a Python keyword; answer e.g. {slug + '_project'!r}"
    if slug in PROJECT_IMPORTS or slug in sys.stdlib_module_names:
        return f"project_slug {slug!r} would shadow the module {slug!r}; answer e.g. {slug + '_project'!r}"
    return None


def free_text_problem(field: str, value: Any) -> str | None:
    """Free text may hold quotes, backslashes and any Unicode (it is written as escaped data), but not nothing."""
    if not isinstance(value, str) or not value.strip():
        return f"{field} is empty; answer some text"
    if any(ord(char) < 32 and char not in "\n\t" for char in value):
        return f"{field} contains control characters; answer plain text"
    if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
        # Lone surrogates (e.g. undecodable bytes on the command line) cannot be written as UTF-8.
        return f"{field} contains lone surrogates, which are not Unicode text; answer plain text"
    if field in ONE_LINE_FIELDS and any(char in LINE_BREAKS for char in value):
        return f"{field} must be one line (it goes into the package metadata); answer it without line breaks"
    return None


def answer_problems(context: dict[str, Any]) -> list[str]:
    """Every problem with the answers, each a line that says what to answer instead."""
    problems = [slug_problem(context["project_slug"])]
    problems += [free_text_problem(field, context[field]) for field in FREE_TEXT_FIELDS]
    return [problem for problem in problems if problem]


def main() -> int:
    context = json.loads(r"""{{ cookiecutter | tojson }}""")
    problems = answer_problems(context)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
