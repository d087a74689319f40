"""Shared fixtures: composing the real config tree and small models."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.support.paths import CONFIG_DIR

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture
def compose() -> Iterator[Callable[..., object]]:
    """Compose `conf/train.yaml` with overrides, as `python -m lth.train` would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        yield lambda *overrides: hydra_compose(config_name="train", overrides=list(overrides))
