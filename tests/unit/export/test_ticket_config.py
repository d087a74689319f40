"""A ticket's config read back from its MLflow params, as load_ticket and the export see it."""

from __future__ import annotations

from lth.export.ticket import _config_from_params
from lth.tracking.identity import flatten


def test_null_values_come_back_as_none_not_as_the_string() -> None:
    # MLflow stores a param as str(value): a null train_limit is logged as "None".
    params = flatten({"data": {"name": "digits", "train_limit": None, "test_fraction": 0.2},
                      "train": {"seed": 0, "data_seed": None, "step_milestones": [5, 10]}})
    config = _config_from_params(params)
    assert config.data.train_limit is None and config.train.data_seed is None
    assert config.data.test_fraction == 0.2 and list(config.train.step_milestones) == [5, 10]
    assert config.data.name == "digits"
