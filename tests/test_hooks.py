"""Unit tests of the hook functions (their Jinja lives only in main) and of local_extensions.py."""

import json
import subprocess
from pathlib import Path

import pytest
import tomllib
from helpers import TEMPLATE_ROOT, load_module
from jinja2 import Environment

pre_gen = load_module(TEMPLATE_ROOT / "hooks" / "pre_gen_project.py")
post_gen = load_module(TEMPLATE_ROOT / "hooks" / "post_gen_project.py")
extensions = load_module(TEMPLATE_ROOT / "local_extensions.py")


GOOD_SLUGS = ["mnist_classifier", "my_project2", "_private", "cifar", "a" * 64]


@pytest.mark.parametrize("slug", GOOD_SLUGS)
def test_good_slugs_pass(slug: str) -> None:
    assert pre_gen.slug_problem(slug) is None


@pytest.mark.parametrize(
    ("slug", "fragment"),
    [
        ("my-project", "'my_project'"),
        ("My Project", "'my_project'"),
        ("2fast", "'my_2fast'"),
        ("café", "'caf'"),
        ("", "not a lowercase Python identifier"),
        ("class", "keyword"),
        ("match", "keyword"),
        ("torch", "shadow"),
        ("test", "shadow"),
        ("json", "shadow"),
        ("utils", "shadow"),
        ("inference", "shadow"),
        ("predict", "shadow"),
        ("optuna", "shadow"),
        (".", "'my_project'"),
        ("..", "'my_project'"),
        ("a/b", "'a_b'"),
        ("a\0b", "'a_b'"),
        ("a" * 65, "65 characters long; answer a name of at most 64"),
        ("a" * 300, "300 characters long"),
    ],
)
def test_bad_slugs_name_the_problem_and_a_fix(slug: str, fragment: str) -> None:
    problem = pre_gen.slug_problem(slug)
    assert problem is not None and fragment in problem
    assert "\n" not in problem


def test_free_text_may_hold_quotes_but_not_be_empty() -> None:
    assert pre_gen.free_text_problem("author", 'O\'Brien "Q" \\ Ünïcødé 😀 𝔘 \U0010ffff\tdel\x7f') is None
    assert pre_gen.free_text_problem("project_name", "Two\nlines") is None
    assert "empty" in pre_gen.free_text_problem("author", "   ")
    assert "control" in pre_gen.free_text_problem("description", "bell\x07")
    assert "lone surrogates" in pre_gen.free_text_problem("description", "undecodable \udcff byte")


@pytest.mark.parametrize("line_break", ["\n", "\x85", "\u2028", "\u2029"])
@pytest.mark.parametrize("field", ["author", "description"])
def test_metadata_fields_are_one_line(field: str, line_break: str) -> None:
    problem = pre_gen.free_text_problem(field, f"first{line_break}second")
    assert problem is not None and problem.startswith(f"{field} must be one line")


ASTRAL = "😀 👩\u200d🔬 🇺🇳 𝔘𝔫𝔦 𠀀 \U0001f9ea \U0010ffff"


@pytest.mark.parametrize(
    "text",
    [
        "",
        ASTRAL,
        "quote \" apostrophe ' triple \"\"\" ''' backslash \\ \\u0041 \\ud83d \\",
        "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x10000))),  # the whole BMP
        "".join(map(chr, range(0x10000, 0x110000, 97))),  # a spread of astral characters
    ],
    ids=["empty", "emoji", "quotes-and-backslashes", "bmp", "astral"],
)
def test_toml_string_reads_back_exactly(text: str) -> None:
    written = extensions.toml_string(text)
    assert tomllib.loads(f"value = {written}\n")["value"] == text
    assert "\n" not in written, "a basic string is one line"


def test_toml_string_keeps_astral_characters_literal() -> None:
    assert extensions.toml_string(ASTRAL) == f'"{ASTRAL}"'


def test_toml_string_refuses_lone_surrogates() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        extensions.toml_string("\udcff")


@pytest.mark.parametrize("slug", GOOD_SLUGS)
def test_project_folder_is_named_after_an_accepted_slug(slug: str) -> None:
    assert extensions.project_dir_name(slug) == slug


@pytest.mark.parametrize("slug", ["", ".", "..", "a/b", "/tmp/x", "a\0b", "a" * 300, "class", "torch", "My Project"])
def test_refused_slug_gets_a_placeholder_folder(slug: str) -> None:
    """cookiecutter creates the project folder before the hook refuses: it must be one fresh, plain folder."""
    assert extensions.project_dir_name(slug) == extensions.REFUSED_PROJECT_DIR


def test_placeholder_folder_is_itself_refused() -> None:
    assert pre_gen.slug_problem(extensions.REFUSED_PROJECT_DIR) is not None


@pytest.mark.parametrize(("slug", "folder"), [("my_project", "my_project"), ("..", "refused-project-slug")])
def test_extension_names_the_template_folder_through_the_check(slug: str, folder: str) -> None:
    assert (TEMPLATE_ROOT / extensions.PROJECT_DIR).is_dir(), "the template folder was renamed"
    env = Environment(extensions=[extensions.TemplateExtension])
    context = {"cookiecutter": {"project_slug": slug, "description": "x 😀"}}
    assert env.from_string(extensions.PROJECT_DIR).render(**context) == folder
    assert env.from_string("in text: {{cookiecutter.project_slug}}").render(**context) == f"in text: {slug}"
    assert env.from_string("{{ cookiecutter.description | toml_string }}").render(**context) == '"x 😀"'


@pytest.mark.parametrize("dataset", ["mnist_sample", "cifar10", "csv_table"])
@pytest.mark.parametrize("accelerator", ["auto", "cpu", "cuda"])
def test_accelerator_defaults_are_consistent(accelerator: str, dataset: str) -> None:
    defaults = post_gen.accelerator_defaults(accelerator, dataset)
    assert defaults["device"] == accelerator
    assert (defaults["trainer.amp"] == "off") == (accelerator == "cpu")
    assert defaults["data_loader.args.pin_memory"] == (accelerator != "cpu")
    assert (defaults["data_loader.args.num_workers"] == 0) == (dataset in {"mnist_sample", "csv_table"})
    gpu_only = {
        "trainer.compile": "default",
        "optimizer.args.fused": True,
        "data_loader.args.prefetch_factor": 4,
    }
    assert all(defaults.get(key) == value for key, value in gpu_only.items()) == (accelerator == "cuda")
    images_on_gpu = accelerator == "cuda" and dataset != "csv_table"  # a table has no image memory layout
    assert ("trainer.channels_last" in defaults) == images_on_gpu


def test_unknown_accelerator_is_refused() -> None:
    with pytest.raises(ValueError, match="accelerator 'tpu'"):
        post_gen.accelerator_defaults("tpu", "mnist_sample")


def test_generate_is_idempotent(tmp_path: Path) -> None:
    """cruft re-runs hooks; running twice must give the same files as running once."""
    config = {
        "device": "x",
        "trainer": {"amp": "x", "compile": "x", "channels_last": None},
        "optimizer": {"args": {}},
        "data_loader": {"args": {"pin_memory": None, "num_workers": 9}},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweep.py").write_text("")
    context = {"accelerator": "cuda", "dataset": "mnist_sample", "tensorboard": False, "sweeps": False}
    context |= {"mlflow": True, "wandb": False}
    post_gen.generate(tmp_path, context)
    first = (tmp_path / "config.json").read_text()
    post_gen.generate(tmp_path, context)
    assert (tmp_path / "config.json").read_text() == first
    assert sorted(path.name for path in tmp_path.iterdir()) == [".cookiecutter.json", "config.json"]
    assert json.loads(first)["device"] == "cuda"
    assert json.loads(first)["trainer"]["loggers"] == ["csv", "mlflow"]
    assert json.loads((tmp_path / ".cookiecutter.json").read_text()) == {**context, "_template": ""}


@pytest.mark.parametrize("answer", list(post_gen.OPTIONAL_PARTS))
@pytest.mark.parametrize("wanted", [True, False], ids=["yes", "no"])
def test_an_optional_part_is_kept_only_when_asked_for(tmp_path: Path, answer: str, wanted: bool) -> None:
    parts = post_gen.OPTIONAL_PARTS[answer]
    for relative in parts:  # a folder's name has no suffix; its files are made inside it
        path = tmp_path / relative / "a.py" if "." not in relative else tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    (tmp_path / "train.py").write_text("")
    answers = dict.fromkeys(post_gen.OPTIONAL_PARTS, True) | {answer: wanted}
    removed = post_gen.remove_parts_not_asked_for(tmp_path, answers)
    assert removed == ([] if wanted else list(parts))
    assert all((tmp_path / relative).exists() is wanted for relative in parts)
    assert (tmp_path / "train.py").is_file()


@pytest.mark.parametrize("dataset", ["csv_table", "mnist_sample"])
def test_a_dataset_page_is_kept_only_for_its_dataset(tmp_path: Path, dataset: str) -> None:
    (tmp_path / "docs").mkdir()
    for page in ("docs/csv-table.md", "docs/resume.md"):
        (tmp_path / page).write_text("")
    removed = post_gen.remove_pages_of_other_datasets(tmp_path, dataset)
    assert removed == ([] if dataset == "csv_table" else ["docs/csv-table.md"])
    assert (tmp_path / "docs" / "csv-table.md").exists() is (dataset == "csv_table")
    assert (tmp_path / "docs" / "resume.md").is_file()


@pytest.mark.parametrize(
    ("tensorboard", "mlflow", "wandb", "loggers"),
    [
        (False, False, False, ["csv"]),
        (True, False, False, ["csv", "tensorboard"]),
        (False, True, False, ["csv", "mlflow"]),
        (False, False, True, ["csv", "wandb"]),
        (True, True, True, ["csv", "tensorboard", "mlflow", "wandb"]),
    ],
)
def test_a_tracker_answered_yes_is_turned_on(tensorboard: bool, mlflow: bool, wandb: bool, loggers: list[str]) -> None:
    answers = {"tensorboard": tensorboard, "mlflow": mlflow, "wandb": wandb}
    assert post_gen.tracker_defaults(answers) == {"trainer.loggers": loggers}


@pytest.mark.parametrize("mlflow", [True, False], ids=["mlflow", "no-mlflow"])
def test_a_setting_only_a_part_reads_goes_with_it(mlflow: bool) -> None:
    config = {"trainer": {"tracking_uri": None, "epochs": 3}}
    post_gen.remove_settings_not_asked_for(config, {"mlflow": mlflow})
    assert config == {"trainer": {"tracking_uri": None, "epochs": 3} if mlflow else {"epochs": 3}}


def test_every_optional_part_is_a_yes_no_answer_with_a_prompt() -> None:
    answers = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text())
    for answer in post_gen.OPTIONAL_PARTS:
        assert answers[answer] is False, answer  # off by default: the default project stays small
        assert answers["__prompts__"][answer].endswith("?"), answer


def git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_recorded_answers_add_where_the_template_lives_and_its_commit(tmp_path: Path) -> None:
    (tmp_path / "cookiecutter.json").write_text("{}")
    git("init", "-q", cwd=tmp_path)
    git("add", "-A", cwd=tmp_path)
    git("commit", "-qm", "v1", cwd=tmp_path)
    head = git("rev-parse", "HEAD", cwd=tmp_path).strip()
    context = {"dataset": "mnist", "_template_url": "gh:o/r", "_repo_dir": str(tmp_path), "_output_dir": "/x"}
    assert post_gen.recorded_answers(context) == {"dataset": "mnist", "_template": "gh:o/r", "_commit": head}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("cruft", "abc123"),  # cruft passes the commit it replays
        ("plain-folder", None),  # not a git checkout: nothing to link to
        ("subfolder-of-a-repository", None),  # a git repository around the template is not the template's
        ("none", None),  # no template folder given
    ],
)
def test_template_commit_is_only_the_templates_own(tmp_path: Path, where: str, expected: str | None) -> None:
    folder = tmp_path / "template"
    folder.mkdir()
    if where == "subfolder-of-a-repository":
        git("init", "-q", cwd=tmp_path)
        (tmp_path / "f").write_text("x")
        git("add", "-A", cwd=tmp_path)
        git("commit", "-qm", "outer", cwd=tmp_path)
    contexts = {"cruft": {"_commit": "abc123", "_repo_dir": str(folder)}, "none": {}}
    context = contexts.get(where, {"_repo_dir": str(folder)})
    assert post_gen.template_commit(context) == expected
