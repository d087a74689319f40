"""Mask math: exact counts, deterministic ties, scopes, ignore list, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lth.pruning.masks import load_masks, save_masks, sparsity_report
from lth.pruning.scopes import prune_masks as magnitude_masks


def _kernels(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv": rng.normal(size=(3, 3, 3, 8)),          # 216 weights
        "depthwise": rng.normal(size=(3, 3, 8, 1)) * 5,  # 72 weights, larger magnitudes
        "dense": rng.normal(size=(8, 10)) * 0.1,         # 80 weights, smaller magnitudes
    }


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.5, 0.8, 0.95, 0.999])
def test_global_scope_prunes_exactly_the_smallest_fraction(threshold: float) -> None:
    kernels = _kernels()
    masks = magnitude_masks(kernels, threshold, "global")
    total = sum(k.size for k in kernels.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert pruned == round(threshold * total)
    magnitudes = np.concatenate([np.abs(k).ravel() for k in kernels.values()])
    kept = np.concatenate([m.ravel() for m in masks.values()])
    if 0 < pruned < total:  # every survivor is at least as large as every pruned weight
        assert magnitudes[kept].min() >= magnitudes[~kept].max()


def test_global_scope_shapes_and_order_follow_the_kernels() -> None:
    kernels = _kernels()
    masks = magnitude_masks(kernels, 0.5, "global")
    assert list(masks) == list(kernels)
    assert all(masks[n].shape == kernels[n].shape and masks[n].dtype == bool for n in kernels)


def test_ties_are_broken_by_network_order_then_position() -> None:
    kernels = {"first": np.ones((2, 3)), "second": np.ones((4,))}
    masks = magnitude_masks(kernels, 0.5, "global")  # 5 of 10 equal weights go
    assert masks["first"].ravel().tolist() == [False] * 5 + [True]
    assert masks["second"].tolist() == [True] * 4
    assert all(np.array_equal(masks[n], magnitude_masks(kernels, 0.5, "global")[n]) for n in kernels)


def test_layer_scope_removes_the_fraction_from_every_layer_and_the_total_is_exact() -> None:
    kernels = _kernels()
    masks = magnitude_masks(kernels, 0.37, "layer")
    total = sum(k.size for k in kernels.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.37 * total)
    for name, kernel in kernels.items():
        pruned = int((~masks[name]).sum())
        assert abs(pruned - 0.37 * kernel.size) < 1.0
        magnitudes = np.abs(kernel).ravel()
        assert magnitudes[masks[name].ravel()].min() >= magnitudes[~masks[name].ravel()].max()


@pytest.mark.parametrize("threshold", [1.0, -0.1, 1.5])
def test_threshold_outside_unit_interval_is_rejected(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        magnitude_masks(_kernels(), threshold, "global")


def test_unknown_scope_is_rejected() -> None:
    with pytest.raises(ValueError, match="scope"):
        magnitude_masks(_kernels(), 0.5, "per-channel")


def test_sparsity_report_counts_and_empty_layers() -> None:
    masks = {"a": np.array([True, False, False, False]), "b": np.zeros(4, dtype=bool)}
    report = sparsity_report(masks)
    assert report["weights"] == 8 and report["kept"] == 1
    assert report["sparsity"] == pytest.approx(7 / 8)
    assert report["empty_layers"] == ["b"]
    assert [layer["density"] for layer in report["layers"]] == [0.25, 0.0]


def test_sparsity_report_counts_dead_output_channels_per_layer_type() -> None:
    conv = np.ones((1, 1, 2, 3), dtype=bool)
    conv[..., 1] = False  # output channel 1 has no weight left
    depthwise = np.ones((3, 3, 4, 1), dtype=bool)
    depthwise[:, :, 2, 0] = False  # channel (2, 0): all 9 weights pruned
    depthwise[0, 0, 3, 0] = False  # channel (3, 0) keeps 8 of 9: alive
    dense = np.ones((5, 2), dtype=bool)
    dense[:, 0] = False
    report = sparsity_report({"conv": conv, "block_1_depthwise": depthwise, "predictions": dense})
    assert [(layer["channels"], layer["dead_channels"]) for layer in report["layers"]] == [(3, 1), (4, 1), (2, 1)]
    assert (report["channels"], report["dead_channels"]) == (9, 3)
    # Read as a Conv2D (not named depthwise, not listed as one), the same mask has one output channel, alive.
    as_conv = sparsity_report({"dw": depthwise}, depthwise_layers=[])
    assert (as_conv["layers"][0]["channels"], as_conv["dead_channels"]) == (1, 0)
    assert sparsity_report({"dw": depthwise}, depthwise_layers=["dw"])["dead_channels"] == 1


def test_masks_round_trip_through_npz_in_order(tmp_path: Path) -> None:
    masks = magnitude_masks(_kernels(), 0.6, "global")
    mask_path, report_path = save_masks(masks, tmp_path, "mask.npz", "sparsity.json")
    loaded = load_masks(mask_path)
    assert list(loaded) == list(masks)
    assert all(np.array_equal(loaded[n], masks[n]) for n in masks)
    assert report_path.read_text().count('"layer"') == 3


def test_imp_levels_nest_and_hit_the_exact_count() -> None:
    kernels = _kernels(3)
    total = sum(k.size for k in kernels.values())
    for scope in ("global", "layer"):
        previous = None
        for level in (1, 2, 3):
            threshold = 1 - 0.8**level
            rng = np.random.default_rng(level)  # the retrained weights of each level differ
            source = {n: k * rng.uniform(0.5, 1.5, size=k.shape) for n, k in kernels.items()}
            if previous is not None:
                source = {n: source[n] * previous[n] for n in source}
            masks = magnitude_masks(source, threshold, scope, previous)
            assert sum(int(m.sum()) for m in masks.values()) == total - round(threshold * total)
            if previous is not None:
                assert all(not np.any(masks[n] & ~previous[n]) for n in masks), "a pruned weight came back"
            previous = masks
        assert sum(int(m.sum()) for m in previous.values()) == total - round(0.488 * total)


def test_random_mask_control_keeps_each_layers_count_at_new_positions() -> None:
    from lth.pruning.masks import random_masks_like

    masks = magnitude_masks(_kernels(), 0.7, "global")
    shuffled = random_masks_like(masks, seed=5)
    assert all(int(shuffled[n].sum()) == int(masks[n].sum()) for n in masks)
    assert any(not np.array_equal(shuffled[n], masks[n]) for n in masks)
    again = random_masks_like(masks, seed=5)
    assert all(np.array_equal(again[n], shuffled[n]) for n in masks)
