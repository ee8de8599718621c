"""Fixtures: bake the template once per session, and a copy of it with test-only models."""

import shutil
import textwrap
from pathlib import Path

import pytest
from helpers import baked

# The test files, longest first (pytest --durations on two cores), so that pytest-xdist's workers, which each
# take the next file when they finish one (--dist loadfile), end together: the long ones are not left for last.
LONGEST_FIRST = [
    "test_project_suite.py", "test_distributed.py", "test_training.py", "test_faults.py", "test_cruft.py",
    "test_user_tasks.py", "test_storage.py", "test_tooling.py", "test_answers.py", "test_user_project.py",
]  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    position = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: position.get(item.path.name, len(position)))  # stable: each file keeps its order


@pytest.fixture(scope="session")
def default_project(cookies_session) -> Path:
    """The project baked with every default answer."""
    return baked(cookies_session)


@pytest.fixture(scope="session")
def sweeps_project(cookies_session) -> Path:
    """The project baked with the default answers but sweeps (sweep.py and its parts)."""
    return baked(cookies_session, sweeps=True)


@pytest.fixture(scope="session")
def all_parts_project(cookies_session) -> Path:
    """The project baked with the default answers but every optional part: sweeps, MLflow and W&B."""
    return baked(cookies_session, sweeps=True, mlflow=True, wandb=True)


@pytest.fixture(scope="module")
def project(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the default project with test-only models: NaN logits on chosen steps, or slow steps."""
    copy = tmp_path_factory.mktemp("faults") / "project"
    shutil.copytree(default_project, copy, ignore=shutil.ignore_patterns("saved", "__pycache__"))
    with (copy / "model" / "model.py").open("a", encoding="utf-8") as handle:
        handle.write(
            textwrap.dedent('''

            import os
            import time

            class NaNOnSteps(ConvNet):
                """Test-only: NaN logits on training forward passes first..last (counting from 1)."""

                def __init__(self, first: int, last: int, **kwargs: int) -> None:
                    super().__init__(**kwargs)
                    self.first, self.last, self.calls = first, last, 0

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    out = super().forward(x)
                    if self.training:
                        self.calls += 1
                        if self.first <= self.calls <= self.last:
                            return out * float("nan")
                    return out


            class SlowConvNet(ConvNet):
                """Test-only: each training step takes at least ``delay`` seconds."""

                def __init__(self, delay: float, **kwargs: int) -> None:
                    super().__init__(**kwargs)
                    self.delay = delay

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    if self.training:
                        time.sleep(self.delay)
                    return super().forward(x)


            class SlowWhileAsked(ConvNet):
                """Test-only: each training step takes at least $SLOW_STEP_SECONDS (0 when unset). A resume
                cannot change the architecture, but it can run the rest of a slowed run at full speed."""

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    if self.training:
                        time.sleep(float(os.environ.get("SLOW_STEP_SECONDS", "0")))
                    return super().forward(x)
            ''')
        )
    return copy
