"""Jinja extensions for this template, loaded through ``_extensions`` in cookiecutter.json.

cookiecutter (and cruft) put the template's folder on ``sys.path`` while they render, so this module is
imported by name. The filters are plain functions that tests import.
"""

import importlib.util
from pathlib import Path

from jinja2 import Environment
from jinja2.ext import Extension

# What a TOML basic string must escape besides the control characters: every other character,
# emoji and other characters outside the Basic Multilingual Plane included, is written as itself.
TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}

# The template folder's name: the first thing cookiecutter renders, and it creates that folder before
# it runs the pre-generation hook.
PROJECT_DIR = "{{cookiecutter.project_slug}}"
PROJECT_DIR_CHECKED = "{{ cookiecutter.project_slug | project_dir_name }}"
# A fresh folder for a refused slug: cookiecutter removes it when the hook refuses, leaving nothing behind.
REFUSED_PROJECT_DIR = "refused-project-slug"


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string that every TOML parser reads back exactly.

    Jinja's ``tojson`` writes a character outside the Basic Multilingual Plane as a UTF-16 surrogate pair
    (``"\\ud83d\\ude00"``), which TOML forbids; here it stays literal.
    """
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        raise ValueError("lone surrogates are not Unicode text and cannot be written to TOML")
    return '"' + "".join(map(_toml_char, text)) + '"'


def _toml_char(char: str) -> str:
    if char in TOML_ESCAPES:
        return TOML_ESCAPES[char]
    if char < " " or char == "\x7f":  # the other control characters TOML forbids in a string
        return f"\\u{ord(char):04X}"
    return char


def _load_slug_problem():
    """The pre-generation hook's slug check, so that both agree on which slugs are refused."""
    spec = importlib.util.spec_from_file_location(
        "_template_pre_gen_project", Path(__file__).resolve().parent / "hooks" / "pre_gen_project.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.slug_problem


slug_problem = _load_slug_problem()


def project_dir_name(slug: str) -> str:
    """The project folder's name: the slug when the pre-generation hook accepts it, else a placeholder.

    cookiecutter creates the project folder before the hook can refuse the slug, so ``""``, ``.``,
    ``..``, ``a/b`` or a name too long for the file system would otherwise fail with a misleading error
    or leave folders behind.
    """
    return slug if slug_problem(slug) is None else REFUSED_PROJECT_DIR


class TemplateExtension(Extension):
    """The ``toml_string`` and ``project_dir_name`` filters; names the project folder through the latter."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["toml_string"] = toml_string
        environment.filters["project_dir_name"] = project_dir_name

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        # The folder's name cannot carry the filter itself (other parts of the template refer to it), so
        # its source is swapped when cookiecutter renders exactly that name; every other text is left as is.
        return PROJECT_DIR_CHECKED if source == PROJECT_DIR else source
