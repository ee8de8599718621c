"""Refuse answers that would generate a broken project, before anything is written."""

import keyword
import sys

SLUG = "{{ cookiecutter.project_slug }}"


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` cannot name the project folder and package, or None when it can."""
    if not slug.isidentifier() or not slug.isascii():
        return f"project_slug {slug!r} is not a Python identifier; use letters, digits and _ (e.g. my_project)"
    if keyword.iskeyword(slug):
        return f"project_slug {slug!r} is a Python keyword; pick another name (e.g. {slug}_project)"
    return None


if __name__ == "__main__":
    problem = slug_problem(SLUG)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
