"""prune.structure: which weights xnnpack_1x1 and channel masks may remove, exactly, and what channel tickets compact to."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pytest

from lth.config.cell import ModelConfig
from lth.export.compact import compact_model
from lth.export.cost import model_cost
from lth.pruning.channels import (
    channel_floor_layers,
    channel_keeps,
    channel_masks,
    check_channels_fit,
    kept_channels,
    masks_of_keeps,
    random_keeps,
)
from lth.pruning.collapse import judge
from lth.pruning.masks import sparsity_report
from lth.pruning.scopes import SCOPES, prune_masks
from lth.pruning.structure import layout
from lth.training.models import build_model


@pytest.fixture(scope="module")
def mobilenet() -> keras.Model:
    return build_model(ModelConfig("mobilenet_v2", 32, 10, alpha=0.35, bn_momentum=0.9), 0)


def _kernels(model: keras.Model, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: np.array(model.get_layer(name).kernel.numpy()) for name in names}


def test_xnnpack_1x1_prunes_only_the_1x1_stride_1_convolutions(mobilenet: keras.Model) -> None:
    names = layout(mobilenet, "xnnpack_1x1").names
    assert "Conv1" not in names and "predictions" not in names
    assert not any("depthwise" in name for name in names)
    assert "Conv_1" in names and "block_1_expand" in names and "expanded_conv_project" in names
    assert all(mobilenet.get_layer(name).kernel.shape[:2] == (1, 1) for name in names)
    every_1x1 = [layer.name for layer in mobilenet.layers if isinstance(layer, keras.layers.Conv2D)
                 and not isinstance(layer, keras.layers.DepthwiseConv2D) and layer.kernel.shape[:2] == (1, 1)]
    assert list(names) == every_1x1
    kernels = _kernels(mobilenet, names)
    masks = prune_masks(kernels, 0.8, "lamp", min_density=0.002)
    total = sum(kernel.size for kernel in kernels.values())
    assert sum(int((~mask).sum()) for mask in masks.values()) == round(0.8 * total)  # exact, over the 1x1 weights


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_channel_masks_remove_whole_channels_close_to_the_threshold(mobilenet: keras.Model, scope: str,
                                                                    threshold: float) -> None:
    plan = layout(mobilenet, "channel")
    kernels = _kernels(mobilenet, plan.names)
    masks = channel_masks(kernels, plan.groups, threshold, scope, min_density=0.002)
    total = sum(kernel.size for kernel in kernels.values())
    removed = sum(int((~mask).sum()) for mask in masks.values())
    biggest_channel = max(sum(kernels[n].size // kernels[n].shape[-1] for n in g.producers) for g in plan.groups)
    assert abs(removed - round(threshold * total)) <= 2 * biggest_channel + 64  # whole channels: close, not exact
    for group in plan.groups:
        keep = kept_channels(masks, group)
        assert keep.sum() >= 1  # the floor keeps every group alive
        for name in group.producers:  # a removed channel loses its whole filter, a kept one only removed inputs
            alive = masks[name].reshape(-1, masks[name].shape[-1])
            assert np.array_equal(alive.any(axis=0), keep)
            assert np.array_equal(masks[name][..., keep].all(axis=-1), masks[name][..., keep].any(axis=-1))
        for name in group.depthwise:
            assert np.array_equal(masks[name].all(axis=(0, 1, 3)), keep)
            assert not masks[name][:, :, ~keep, :].any()
        for name in group.readers:  # a removed channel is not read either
            assert not masks[name][..., ~keep, :].any()
    assert masks["predictions"].any(axis=0).all()  # every class keeps its logit
    assert masks["Conv1"].any(axis=(0, 1, 3)).all()  # and the image its three channels


def test_channel_ranking_removes_the_weakest_channels_first(mobilenet: keras.Model) -> None:
    plan = layout(mobilenet, "channel")
    kernels = _kernels(mobilenet, plan.names)
    group = next(g for g in plan.groups if g.producers == ("block_3_expand",))
    kernels["block_3_expand"][..., :5] *= 1e-3  # five channels whose filters are far weaker than the rest
    kernels["block_3_depthwise"][:, :, :5, :] *= 1e-3
    masks = channel_masks(kernels, plan.groups, 0.3, "lamp", min_density=0.002)
    assert not kept_channels(masks, group)[:5].any()


def test_a_channel_ticket_compacts_to_about_one_minus_t_of_the_weights(mobilenet: keras.Model) -> None:
    model = keras.models.clone_model(mobilenet)
    model.set_weights(mobilenet.get_weights())
    plan = layout(model, "channel")
    kernels = _kernels(model, plan.names)
    masks = channel_masks(kernels, plan.groups, 0.5, "layer", min_density=0.002)
    for name, mask in masks.items():
        model.get_layer(name).kernel.assign(kernels[name] * mask)
    images = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3)).astype("uint8")
    compaction = compact_model(model)
    assert np.abs(compaction.model.predict(images, verbose=0) - model.predict(images, verbose=0)).max() < 1e-4
    before, after = model_cost(mobilenet), model_cost(compaction.model)
    kernel_total = sum(kernel.size for kernel in kernels.values())
    kept_kernels = sum(int(mask.sum()) for mask in masks.values())
    compact_kernels = sum(int(np.prod(compaction.model.get_layer(n).kernel.shape)) for n in plan.names)
    assert compact_kernels == kept_kernels  # compaction removes exactly what the channel mask removed
    assert abs(kept_kernels / kernel_total - 0.5) < 0.01
    assert 0.35 < after.macs / before.macs < 0.65  # layer scope: MACs fall with the weights


def test_the_random_control_moves_whole_channels_and_keeps_each_groups_count(mobilenet: keras.Model) -> None:
    plan = layout(mobilenet, "channel")
    kernels = _kernels(mobilenet, plan.names)
    keeps = channel_keeps(kernels, plan.groups, 0.6, "lamp", min_density=0.002)
    masks = masks_of_keeps(kernels, plan.groups, keeps)
    moved = masks_of_keeps(kernels, plan.groups, random_keeps(plan.groups, keeps, seed=3))
    assert any(not np.array_equal(kept_channels(masks, g), kept_channels(moved, g)) for g in plan.groups)
    for group in plan.groups:
        assert kept_channels(masks, group).sum() == kept_channels(moved, group).sum()
    assert sum(int(m.sum()) for m in moved.values()) == pytest.approx(sum(int(m.sum()) for m in masks.values()),
                                                                      rel=0.05)


def test_a_threshold_whole_channels_cannot_reach_is_refused(mobilenet: keras.Model) -> None:
    plan = layout(mobilenet, "channel")
    shapes = {name: tuple(mobilenet.get_layer(name).kernel.shape) for name in plan.names}
    check_channels_fit(shapes, plan.groups, 0.9, 0.002)
    with pytest.raises(ValueError, match="can remove at most"):
        check_channels_fit(shapes, plan.groups, 0.999, 0.01)


def test_the_job_line_and_table_name_a_structure_beside_the_scope() -> None:
    from lth.sweep.results import job_line, table

    record = {"threshold": 0.5, "reset_epoch": 1, "scope": "lamp", "method": "magnitude", "control": "none",
              "seed": 0, "weights_remaining": 0.5, "test_accuracy": 0.9, "dense_test_accuracy": 0.91,
              "epochs_trained": 14, "reused": False, "ticket_run_id": "abc", "dense_run_id": "def"}
    assert job_line({**record, "structure": "channel"}).startswith("ticket [lamp, channel] t=0.50 k=1")
    assert job_line(record).startswith("ticket [lamp] t=0.50")  # result.json from before the key: none
    assert "lamp, xnnpack_1x1" in table([{**record, "structure": "xnnpack_1x1"}, record])


def _joined_branches() -> keras.Model:
    """stem -> (a -> b) + p -> head: the group of b and p has two producers, one reading an emptiable group."""
    inputs = keras.Input((6, 6, 3))
    stem = keras.layers.Conv2D(8, 1, name="stem")(inputs)
    branch = keras.layers.Conv2D(8, 1, name="b")(keras.layers.Conv2D(8, 1, name="a")(stem))
    joined = keras.layers.Add(name="join")([branch, keras.layers.Conv2D(8, 1, name="p")(stem)])
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(joined)))


def test_the_random_control_keeps_each_groups_count_even_when_a_producer_lost_all_its_inputs() -> None:
    model = _joined_branches()
    plan = layout(model, "channel")
    rng = np.random.default_rng(0)
    kernels = {name: rng.normal(size=model.get_layer(name).kernel.shape) for name in plan.names}
    kernels["a"] *= 1e-3  # the weakest group: global ranking empties it first, which leaves b reading nothing
    keeps = channel_keeps(kernels, plan.groups, 0.65, "global", 0.0)  # stem keeps 5 of 8, a none, b and p all 8
    assert [int(keep.sum()) for keep in keeps] == [5, 0, 8]
    masks = masks_of_keeps(kernels, plan.groups, keeps)
    chosen = random_keeps(plan.groups, keeps, seed=0)
    moved = masks_of_keeps(kernels, plan.groups, chosen)
    assert sum(int(m.sum()) for m in moved.values()) == sum(int(m.sum()) for m in masks.values())
    for group, keep, control in zip(plan.groups, keeps, chosen):
        assert np.array_equal(kept_channels(masks, group), keep)
        assert np.array_equal(kept_channels(moved, group), control)  # the control's masks keep what it chose...
        assert np.count_nonzero(control) == np.count_nonzero(keep), group  # ...as many channels as the ticket's group
    assert not np.array_equal(chosen[0], keeps[0])  # the stem's 5 are drawn at random, not the ticket's


def test_a_channel_threshold_past_the_weight_floor_is_checked_in_channels(compose: Callable[..., object]) -> None:
    from lth.validation.validate import validate_config

    # Between two groups a layer keeps about f^2 of its weights, so t = 0.85 with min_density 0.2 is reachable.
    validate_config(compose("prune.structure=channel", "prune.threshold=0.85", "prune.min_density=0.2"))
    model = build_model(ModelConfig("mobilenet_v2", 32, 10, alpha=0.35, bn_momentum=0.9), 0)
    plan = layout(model, "channel")
    kernels = _kernels(model, plan.names)
    keeps = channel_keeps(kernels, plan.groups, 0.85, "layer", 0.2)
    masks = masks_of_keeps(kernels, plan.groups, keeps)
    total = sum(kernel.size for kernel in kernels.values())
    assert abs(1 - sum(int(m.sum()) for m in masks.values()) / total - 0.85) < 0.01
    assert all(keep.sum() >= np.ceil(0.2 * keep.size) for keep in keeps)


def test_channel_tickets_are_at_the_floor_only_where_a_group_is(mobilenet: keras.Model) -> None:
    plan = layout(mobilenet, "channel")
    kernels = _kernels(mobilenet, plan.names)
    # 2 of the 25 groups end at their floor here (at t = 0.78 none did, which left nothing to check).
    keeps = channel_keeps(kernels, plan.groups, 0.9, "layer", 0.2)
    masks = masks_of_keeps(kernels, plan.groups, keeps)
    at_floor = channel_floor_layers(plan.groups, keeps, 0.2)
    floored = [keep.sum() <= np.ceil(0.2 * group.channels) for group, keep in zip(plan.groups, keeps)]
    assert 0 < sum(floored) < len(floored)
    expected = {name for group, low in zip(plan.groups, floored) if low for name in (*group.producers, *group.depthwise)}
    assert set(at_floor) == expected
    assert len(at_floor) < len(judge(sparsity_report(masks), 0.2).floor)  # the weight rule tags layers between groups
