"""Layer allocation: every scope exact, LAMP and the floor keep layers alive, ERK follows its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lth.pruning.scopes import SCOPES, erk_densities, lamp_scores, prune_masks


def _uneven() -> dict[str, np.ndarray]:
    """Layers of very different sizes and scales, like MobileNetV2's stem, depthwise, 1x1 and head."""
    rng = np.random.default_rng(7)
    return {
        "stem": rng.normal(size=(3, 3, 3, 8)) * 1.0,            # 216, large weights
        "depthwise": rng.normal(size=(3, 3, 8, 1)) * 2.0,       # 72, the largest weights
        "pointwise": rng.normal(size=(1, 1, 8, 64)) * 0.3,      # 512
        "head": rng.normal(size=(1, 1, 64, 320)) * 0.01,        # 20,480, tiny weights (fan-in scaling)
        "classifier": rng.normal(size=(320, 10)) * 0.05,        # 3,200
    }


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("min_density", [0.0, 0.002])
def test_every_scope_hits_the_exact_global_count(scope: str, threshold: float, min_density: float) -> None:
    kernels = _uneven()
    total = sum(k.size for k in kernels.values())
    masks = prune_masks(kernels, threshold, scope, min_density=min_density)
    assert sum(int(m.sum()) for m in masks.values()) == total - round(threshold * total)
    if min_density:
        assert all(int(masks[n].sum()) >= math.ceil(min_density * k.size) for n, k in kernels.items())


def test_lamp_keeps_every_layer_where_global_empties_the_largest() -> None:
    kernels = _uneven()
    global_masks = prune_masks(kernels, 0.99, "global")
    lamp_masks = prune_masks(kernels, 0.99, "lamp")
    assert int(global_masks["head"].sum()) == 0
    assert all(int(m.sum()) >= 1 for m in lamp_masks.values())


def test_lamp_score_matches_its_definition() -> None:
    weights = np.array([3.0, 1.0, 2.0, 2.0])
    scores = lamp_scores(weights)
    # w^2 / sum of w'^2 over the weights not smaller: 1/(1+4+4+9), 4/(4+4+9) twice, 9/9
    np.testing.assert_allclose(scores, [1.0, 1 / 18, 4 / 17, 4 / 17])
    assert lamp_scores(np.array([-1.0, 2.0]))[0] < 0  # already pruned stays below every live weight


def test_erk_densities_follow_the_formula_with_capping() -> None:
    shapes = [(3, 3, 3, 8), (320, 10), (1, 1, 64, 320), (1, 1, 64, 64)]
    sizes = np.array([math.prod(s) for s in shapes])
    keep = int(0.4 * sizes.sum())
    densities = erk_densities(shapes, keep)
    assert float(np.dot(densities, sizes)) == pytest.approx(keep)
    assert densities[0] == 1.0 and densities[1] == 1.0  # small layers would exceed 1: kept dense
    raw = [sum(s) / math.prod(s) for s in shapes]
    assert densities[2] / densities[3] == pytest.approx(raw[2] / raw[3])  # the rest scale with sum/prod
    assert densities[2] < 1.0 and densities[3] < 1.0


def test_impossible_floor_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="min_density"):
        prune_masks(_uneven(), 0.99, "lamp", min_density=0.5)


@pytest.mark.parametrize("scope", SCOPES)
def test_every_scope_nests_under_a_previous_mask(scope: str) -> None:
    kernels = _uneven()
    first = prune_masks(kernels, 0.5, scope, min_density=0.01)
    second = prune_masks({n: k * first[n] for n, k in kernels.items()}, 0.8, scope, first, min_density=0.01)
    assert all(not np.any(second[n] & ~first[n]) for n in kernels)


def _mobilenet_v2_kernel_shapes() -> dict[str, tuple[int, ...]]:
    """Kernel shapes of MobileNetV2 alpha 1.0 at 224 with 1000 classes (built, never trained)."""
    import keras

    from lth.pruning.masks import prunable_layer_names

    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=1000)
    return {name: tuple(model.get_layer(name).kernel.shape) for name in prunable_layer_names(model)}


def test_floor_weights_are_taken_in_proportion_to_each_layers_share_above_its_floor() -> None:
    # The review's case: ERK at t=0.99 with a 0.6% floor took about the same absolute count from every
    # layer, so Conv1 lost 88% of its ERK share and block 16's depthwise 10%.
    shapes = _mobilenet_v2_kernel_shapes()
    rng = np.random.default_rng(0)
    kernels = {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    total = sum(sizes.values())
    threshold, min_density = 0.99, 0.006
    keep_total = total - round(threshold * total)
    densities = erk_densities(list(shapes.values()), keep_total)
    ideal = {name: density * sizes[name] for name, density in zip(shapes, densities)}
    floors = {name: math.ceil(min_density * size) for name, size in sizes.items()}
    masks = prune_masks(kernels, threshold, "erk", min_density=min_density)
    kept = {name: int(mask.sum()) for name, mask in masks.items()}
    assert sum(kept.values()) == keep_total
    assert all(kept[name] >= floors[name] for name in shapes)
    above = [name for name in shapes if ideal[name] > floors[name] + 50]  # layers that give weights to the floors
    assert len(above) >= 5
    lost = {name: (ideal[name] - kept[name]) / (ideal[name] - floors[name]) for name in above}
    assert max(lost.values()) - min(lost.values()) < 0.02, sorted(lost.items(), key=lambda item: item[1])
    pinned = [name for name in shapes if ideal[name] <= floors[name]]
    assert all(kept[name] == floors[name] for name in pinned)
