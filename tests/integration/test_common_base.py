"""Every sparse run's `weights_remaining` is a fraction of one common base: all prunable weights of the network.

`prune.structure=xnnpack_1x1` masks only the 1x1 convolutions and `prune.ignore` keeps layers dense, so
the share of the masked layers alone is another axis; the report must never rank the two together.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from lth import tracking
from lth.config.cell import ModelConfig
from lth.pruning.scopes import prune_masks
from lth.pruning.structure import layout
from lth.report.cells import aggregate
from lth.report.collect import collect
from lth.report.figures import lottery_plot
from lth.report.winners import mark_winners
from lth.stages import sparse
from lth.tracking import schema
from lth.training.models import build_model

PRUNABLE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)  # counted here, not imported


@pytest.fixture(scope="module")
def tiny() -> keras.Model:
    """conf/model/mobilenet_v2_tiny.yaml: MobileNetV2 at width 0.35, 32x32, 10 classes."""
    return build_model(ModelConfig("mobilenet_v2", 32, 10, alpha=0.35, bn_momentum=0.9), 0)


@pytest.fixture
def store(tmp_path: Path):
    """A real sqlite MLflow store in tmp_path; yields its experiment id."""
    previous = mlflow.get_tracking_uri()
    yield tracking.connect(f"sqlite:///{tmp_path / 'mlflow.db'}", "lth")
    mlflow.set_tracking_uri(previous)


def _kernel_sizes(model: keras.Model) -> dict[str, int]:
    return {layer.name: int(np.prod(layer.kernel.shape)) for layer in model.layers if isinstance(layer, PRUNABLE)}


def _logged(experiment_id: str, model: keras.Model, masks: dict[str, np.ndarray]) -> tuple[dict[str, float], dict]:
    """Log `masks` as a sparse run does; returns the run's metrics and its sparsity.json."""
    with mlflow.start_run(experiment_id=experiment_id) as run:
        sparse.log_mask_report(model, masks)
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    report = tracking.fetch(run.info.run_id, schema.SPARSITY_REPORT, lambda path: json.loads(path.read_text()))
    return metrics, report


@pytest.mark.parametrize(("structure", "ignore"), [("xnnpack_1x1", ()), ("none", ("Conv1", "Conv_1", "predictions"))])
def test_weights_remaining_is_the_share_of_every_prunable_weight(tiny: keras.Model, store: str, structure: str,
                                                                 ignore: tuple[str, ...]) -> None:
    sizes = _kernel_sizes(tiny)
    names = layout(tiny, structure, ignore).names
    assert 0 < len(names) < len(sizes)  # the mask covers some layers only
    masks = prune_masks({n: np.array(tiny.get_layer(n).kernel.numpy()) for n in names}, 0.9, "lamp", None, 0.002)
    masked = sum(mask.size for mask in masks.values())
    kept = sum(int(mask.sum()) for mask in masks.values())
    kept_all = kept + sum(size for name, size in sizes.items() if name not in masks)  # unmasked layers stay dense

    metrics, report = _logged(store, tiny, masks)

    assert metrics[schema.WEIGHTS_REMAINING] == kept_all / sum(sizes.values())
    assert metrics[schema.SPARSITY] == 1 - kept_all / sum(sizes.values())
    assert metrics[schema.WEIGHTS_REMAINING_OF_MASKED_LAYERS] == kept / masked
    assert abs(metrics[schema.WEIGHTS_REMAINING_OF_MASKED_LAYERS] - 0.1) <= 0.5 / masked  # t=0.9 of the masked ones
    assert metrics[schema.WEIGHTS_REMAINING] > 0.15  # the tiny model keeps 18.4% under xnnpack_1x1 at t=0.9
    assert (report["weights"], report["kept"]) == (masked, kept)  # both totals in sparsity.json
    assert (report["all_prunable_weights"], report["all_prunable_kept"]) == (sum(sizes.values()), kept_all)


def test_a_level_logged_before_the_common_base_is_summed_up_on_it(tiny: keras.Model) -> None:
    """An IMP job that reuses such a level reports the common fraction (lth.stages.imp), from the level's masks."""
    sizes = _kernel_sizes(tiny)
    names = layout(tiny, "xnnpack_1x1").names
    masks = prune_masks({n: np.array(tiny.get_layer(n).kernel.numpy()) for n in names}, 0.9, "lamp", None, 0.002)
    kept_all = sum(int(m.sum()) for m in masks.values()) + sum(s for n, s in sizes.items() if n not in masks)
    legacy = {schema.WEIGHTS_REMAINING: 0.1, schema.SPARSITY: 0.9, schema.TEST_ACCURACY: 0.9}
    rebased = sparse.rebased_metrics(legacy, masks, sum(sizes.values()))
    assert rebased[schema.WEIGHTS_REMAINING] == kept_all / sum(sizes.values())
    assert rebased[schema.SPARSITY] == 1 - kept_all / sum(sizes.values())
    assert abs(rebased[schema.WEIGHTS_REMAINING_OF_MASKED_LAYERS] - 0.1) < 1e-4 and rebased[schema.TEST_ACCURACY] == 0.9
    logged = {**legacy, schema.WEIGHTS_REMAINING_OF_MASKED_LAYERS: 0.1}
    assert sparse.rebased_metrics(logged, masks, sum(sizes.values())) == logged  # logged on it already


@pytest.mark.parametrize(("params", "known"), [
    ({}, True),  # before prune.structure: none, every prunable layer masked
    ({"prune.structure": "none", "prune.ignore": "[]"}, True),
    ({"prune.structure": "channel", "prune.ignore": "[]"}, True),  # channel masks cover every prunable layer too
    ({"prune.structure": "xnnpack_1x1", "prune.ignore": "[]"}, False),
    ({"prune.structure": "none", "prune.ignore": '["Conv1"]'}, False),
])
def test_which_runs_logged_before_the_common_base_are_on_it(params: dict[str, str], known: bool) -> None:
    assert schema.on_common_base({schema.WEIGHTS_REMAINING: 0.1}, params) is known
    assert schema.on_common_base({schema.WEIGHTS_REMAINING: 0.1, schema.WEIGHTS_REMAINING_OF_MASKED_LAYERS: 0.1},
                                 params)


# The report ------------------------------------------------------------------------------------------------------

FAMILY = "fam0"


def _run(client: MlflowClient, experiment: str, tags: dict[str, str], params: dict[str, str],
         metrics: dict[str, float], val: float | None = None) -> str:
    run_id = client.create_run(experiment, tags={schema.FAMILY: FAMILY, **tags}).info.run_id
    history = [Metric(schema.VAL_ACCURACY, val, 0, 1)] if val is not None else []
    client.log_batch(run_id, metrics=history + [Metric(k, v, 0, 0) for k, v in metrics.items()],
                     params=[Param(k, v) for k, v in params.items()])
    client.set_terminated(run_id, schema.FINISHED)
    return run_id


def _ticket(client: MlflowClient, experiment: str, dense: str, threshold: float, structure: str,
            metrics: dict[str, float]) -> str:
    """A one-shot ticket as lth.stages.tickets logs it (one seed), with val 0.95 and test 0.94."""
    cell = f"cell-{structure}-{threshold}"
    tags = {schema.ROLE: schema.TICKET_ROLE, schema.KEY: cell, schema.CELL: cell, schema.PARENT: dense,
            schema.DENSE_RUN: dense, schema.DENSE_HASH: "d0",
            **schema.SparseTags(threshold, 1, "lamp", "magnitude", "none", 0).tags()}
    params = {"train.seed": "0", "reset.epoch": "1", "prune.threshold": str(threshold), "prune.scope": "lamp",
              "prune.method": "magnitude", "prune.control": "none", "prune.control_seed": "0", "prune.ignore": "[]",
              "prune.structure": structure, "prune.min_density": "0.002"}
    return _run(client, experiment, tags, params, {**metrics, schema.TEST_ACCURACY: 0.94, schema.DEAD_CHANNELS: 0.0},
                val=0.95)


def test_a_ticket_logged_on_its_masked_layers_only_is_neither_ranked_nor_drawn_with_the_others(store: str) -> None:
    client = MlflowClient()
    dense = _run(client, store, {schema.ROLE: schema.DENSE_ROLE, schema.KEY: "d0", schema.DENSE_HASH: "d0",
                                 schema.SEED: "0"}, {"train.seed": "0"}, {schema.TEST_ACCURACY: 0.94}, val=0.95)
    # Before the common base: 10% of the 1x1 weights (it keeps 18.4% of all), and 20% of all.
    legacy = _ticket(client, store, dense, 0.9, "xnnpack_1x1", {schema.WEIGHTS_REMAINING: 0.1, schema.SPARSITY: 0.9})
    plain = _ticket(client, store, dense, 0.8, "none", {schema.WEIGHTS_REMAINING: 0.2, schema.SPARSITY: 0.8})

    family = collect(store, FAMILY)
    rows, winners = mark_winners(aggregate(family, schema.VAL_ACCURACY), 0.01, "val")

    assert winners[1] is not None and winners[1].run_ids == (plain,)  # not the legacy ticket, "sparser" on its own axis
    [apart] = [row for row in rows if row.run_ids == (legacy,)]
    assert not apart.eligible and "masked layers only" in apart.why_not
    figure = lottery_plot(rows, family.dense_accuracies, [], "t")
    drawn = [x for line in figure.axes[0].get_lines() for x in line.get_xdata()]
    assert drawn and 10.0 not in drawn and 20.0 in drawn  # the legacy ticket is not on the axis
    assert any("not drawn" in text.get_text() for text in figure.axes[0].get_legend().get_texts())


def test_a_ticket_logged_on_the_common_base_competes_whatever_its_structure(store: str) -> None:
    client = MlflowClient()
    dense = _run(client, store, {schema.ROLE: schema.DENSE_ROLE, schema.KEY: "d0", schema.DENSE_HASH: "d0",
                                 schema.SEED: "0"}, {"train.seed": "0"}, {schema.TEST_ACCURACY: 0.94}, val=0.95)
    xnnpack = _ticket(client, store, dense, 0.95, "xnnpack_1x1",
                      {schema.WEIGHTS_REMAINING: 0.15, schema.SPARSITY: 0.85,
                       schema.WEIGHTS_REMAINING_OF_MASKED_LAYERS: 0.05})
    _ticket(client, store, dense, 0.8, "none", {schema.WEIGHTS_REMAINING: 0.2, schema.SPARSITY: 0.8})

    rows, winners = mark_winners(aggregate(collect(store, FAMILY), schema.VAL_ACCURACY), 0.01, "val")

    assert winners[1] is not None and winners[1].run_ids == (xnnpack,)
    assert winners[1].weights_remaining == 0.15
    assert all(row.eligible for row in rows)
