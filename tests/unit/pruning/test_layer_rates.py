"""Per-layer IMP rates (`prune.layer_rates`): exact counts per level, magnitude within the layer, nesting.

Frankle & Carbin prune LeNet-300-100's hidden layers at 20% and its output layer at 10% of
the survivors per round. A layer with its own rate r keeps exactly
size - round((1 - (1 - r)^level) * size) weights at every level, chosen by magnitude within
itself; the other layers together keep total - round((1 - (1 - rate)^level) * total), spread
over them by the scope. Configs without the key (written before it existed) keep their identity.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf, open_dict

from lth.pruning.scopes import imp_level_threshold, imp_masks
from lth.tracking.identity import cell_key, dense_hash, imp_level_key, ticket_key
from lth.validation.validate import ConfigError, validate_config

LENET = {"fc1": (784, 300), "fc2": (300, 100), "predictions": (100, 10)}  # 235,200 + 30,000 + 1,000 weights
LEVELS = range(1, 13)  # the paper's 12 rounds: 0.8^12 = 6.9% of the hidden weights remain


def _kept(size: int, rate: float, level: int) -> int:
    """What the spec says a part of `size` weights at `rate` keeps after `level` levels."""
    return size - round((1 - (1 - rate) ** level) * size)


def _trained(rng: np.random.Generator, masks: dict[str, np.ndarray] | None, ties: bool) -> dict[str, np.ndarray]:
    """Kernels as a level's training leaves them: pruned weights exactly zero, survivors moved.

    With `ties`, magnitudes are rounded to a few values (many equal weights, and survivors at
    exactly 0, the value of every pruned weight), so ties are broken at every prune boundary.
    """
    kernels = {}
    for index, (name, shape) in enumerate(LENET.items()):
        kernel = rng.normal(size=shape) * (0.05 / (index + 1))  # layers at different scales, as after Glorot init
        if ties:
            kernel = np.round(kernel * 40) / 40
        kernels[name] = (kernel if masks is None else np.where(masks[name], kernel, 0.0)).astype(np.float32)
    return kernels


def _assert_magnitude_order(kernel: np.ndarray, before: np.ndarray, kept: np.ndarray, name: str) -> None:
    """The kept weights of a layer are its largest |w| among the previous level's survivors."""
    magnitude = np.abs(kernel.astype(np.float64))
    dropped = before & ~kept
    if kept.any() and dropped.any():
        assert magnitude[kept].min() >= magnitude[dropped].max(), f"{name}: a larger weight was pruned"


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("scope", ["layer", "global", "lamp"])
@pytest.mark.parametrize("own", [{"predictions": 0.1}, {"predictions": 0.1, "fc2": 0.35}],
                         ids=["output_at_10", "two_own_rates"])
def test_every_level_keeps_the_exact_counts_by_magnitude_and_nested(scope: str, ties: bool,
                                                                    own: dict[str, float]) -> None:
    rng = np.random.default_rng(11)
    rate = 0.2
    sizes = {name: int(np.prod(shape)) for name, shape in LENET.items()}
    common = [name for name in LENET if name not in own]
    common_total = sum(sizes[name] for name in common)
    total = sum(sizes.values())
    previous: dict[str, np.ndarray] | None = None
    for level in LEVELS:
        kernels = _trained(rng, previous, ties)
        masks = imp_masks(kernels, rate, level, scope, own, previous)
        assert list(masks) == list(LENET)  # network order, every layer
        before = previous or {name: np.ones(shape, dtype=bool) for name, shape in LENET.items()}
        for name in LENET:
            assert masks[name].dtype == bool and masks[name].shape == LENET[name]
            assert not (masks[name] & ~before[name]).any(), f"level {level}: a pruned weight of {name} came back"
        counts = {name: int(np.count_nonzero(masks[name])) for name in LENET}
        for name, layer_rate in own.items():
            assert counts[name] == _kept(sizes[name], layer_rate, level), (level, name)
            _assert_magnitude_order(kernels[name], before[name], masks[name], name)
        assert sum(counts[name] for name in common) == _kept(common_total, rate, level), level
        for name in common:  # every scope ranks a layer's weights by magnitude (LAMP's score is monotone in |w|)
            _assert_magnitude_order(kernels[name], before[name], masks[name], name)
        if scope == "global":  # one ranking over the common layers: no pruned weight beats a kept one anywhere
            _assert_magnitude_order(np.concatenate([kernels[n].ravel() for n in common]),
                                    np.concatenate([before[n].ravel() for n in common]),
                                    np.concatenate([masks[n].ravel() for n in common]), "common layers")
        if scope == "layer":  # each common layer at the common rate (LeNet's sizes divide evenly for a while)
            for name in common:
                assert abs(counts[name] - sizes[name] * (1 - rate) ** level) <= 1, (level, name)
        removed = total - sum(counts.values())
        assert imp_level_threshold(sizes, rate, level, own) == removed / total, level
        previous = masks


def test_the_lenet_recipe_counts_of_the_first_levels_are_pinned() -> None:
    """fc1 and fc2 at 20%, predictions at 10%: the paper's LeNet schedule, by hand."""
    rng = np.random.default_rng(0)
    previous = None
    expected = {1: (188160, 24000, 900), 2: (150528, 19200, 810), 3: (120422, 15360, 729)}
    for level, counts in expected.items():
        kernels = _trained(rng, previous, ties=False)
        previous = imp_masks(kernels, 0.2, level, "layer", {"predictions": 0.1}, previous)
        assert tuple(int(previous[n].sum()) for n in LENET) == counts, level
    # 0.8^3 * 265,200 = 135,782.4 -> 135,782 kept of the hidden layers; 729 of the output layer
    assert imp_level_threshold({n: int(np.prod(s)) for n, s in LENET.items()}, 0.2, 3, {"predictions": 0.1}) == (
        (266200 - 135782 - 729) / 266200)


def test_the_own_rate_layer_is_independent_of_the_scope_and_of_the_other_layers() -> None:
    rng = np.random.default_rng(5)
    kernels = _trained(rng, None, ties=True)
    by_scope = {scope: imp_masks(kernels, 0.5, 1, scope, {"predictions": 0.1}) for scope in ("layer", "global", "lamp")}
    alone = imp_masks({"predictions": kernels["predictions"]}, 0.5, 1, "global", {"predictions": 0.1})
    for masks in by_scope.values():
        np.testing.assert_array_equal(masks["predictions"], alone["predictions"])


def test_without_layer_rates_imp_masks_is_the_plain_imp_prune() -> None:
    from lth.pruning.scopes import imp_threshold, prune_masks

    rng = np.random.default_rng(2)
    previous = None
    for level in (1, 2, 3):
        kernels = _trained(rng, previous, ties=True)
        for scope in ("layer", "global", "lamp"):
            plain = prune_masks(kernels, imp_threshold(0.2, level), scope, previous)
            ours = imp_masks(kernels, 0.2, level, scope, None, previous)
            assert all(np.array_equal(ours[n], plain[n]) for n in LENET), (level, scope)
            assert all(np.array_equal(imp_masks(kernels, 0.2, level, scope, {}, previous)[n], plain[n]) for n in LENET)
        previous = prune_masks(kernels, imp_threshold(0.2, level), "layer", previous)


def test_an_unknown_layer_name_is_a_value_error_naming_the_key() -> None:
    kernels = _trained(np.random.default_rng(0), None, ties=False)
    sizes = {name: kernel.size for name, kernel in kernels.items()}
    with pytest.raises(ValueError, match=r"prune.layer_rates names layers that are not pruned: \['fc3'\]"):
        imp_masks(kernels, 0.2, 1, "layer", {"fc3": 0.1})
    with pytest.raises(ValueError, match=r"prune.layer_rates names layers that are not pruned: \['fc3'\]"):
        imp_level_threshold(sizes, 0.2, 1, {"fc3": 0.1, "predictions": 0.1})


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    (("prune.layer_rates={predictions:0.1}",), r"prune.layer_rates sets IMP rates per layer: it needs prune.method=imp"),
    (("prune.method=imp", "prune.layer_rates={predictions:1.5}"), r"prune.layer_rates.predictions must be in \(0, 1\)"),
    (("prune.method=imp", "prune.layer_rates={predictions:1.0}"), r"prune.layer_rates.predictions must be in \(0, 1\)"),
    (("prune.method=imp", "prune.layer_rates={predictions:0}"), r"prune.layer_rates.predictions must be in \(0, 1\)"),
    (("prune.method=imp", "prune.layer_rates={predictions:-0.1}"), r"prune.layer_rates.predictions must be in \(0, 1\)"),
    (("prune.method=imp", "prune.layer_rates={predictions:true}"), r"prune.layer_rates.predictions must be in \(0, 1\)"),
    (("prune.method=imp", "prune.layer_rates={predictions:abc}"), r"prune.layer_rates.predictions must be in \(0, 1\)"),
    (("prune.method=imp", "prune.ignore=[predictions]", "prune.layer_rates={predictions:0.1}"),
     r"prune.layer_rates names layers that prune.ignore keeps dense: \['predictions'\]"),
    (("prune.method=imp", "prune.layer_rates=[0.1]"), r"prune.layer_rates must map layer names to rates"),
])
def test_bad_layer_rates_are_config_errors_naming_the_key(compose: Callable[..., object], overrides: tuple[str, ...],
                                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(*overrides))


def _fashion_folder(folder: Path) -> Path:
    """Stand-ins for the four IDX files (validation and identities only look at the files, not into them)."""
    from lth.data.arrays import FASHION_MNIST_FILES

    folder.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        (folder / name).write_bytes(name.encode())
    return folder


def test_good_layer_rates_pass(compose: Callable[..., object], tmp_path: Path) -> None:
    validate_config(compose("prune.method=imp", "prune.layer_rates={predictions:0.1}"))
    validate_config(compose("prune.method=imp", "prune.layer_rates={}"))
    validate_config(compose("prune.layer_rates={}"))  # empty is no per-layer rate, whatever the method
    preset = compose("experiment=lenet_fashion_imp", f"data.path={_fashion_folder(tmp_path)}")
    assert OmegaConf.to_container(preset.prune.layer_rates) == {"predictions": 0.1}
    validate_config(preset)


# --- identity ---------------------------------------------------------------------------------


def _without(cfg: object, group: str, key: str) -> object:
    """`cfg` as a config written before `group.key` existed."""
    old = OmegaConf.create(OmegaConf.to_container(cfg))  # plain: the declared schema lets no key go
    with open_dict(old):
        del old[group][key]
    assert key not in old[group]
    return old


@pytest.mark.parametrize("method", ["imp", "magnitude"])
def test_empty_layer_rates_keep_the_identities_of_configs_without_the_key(compose: Callable[..., object],
                                                                         method: str) -> None:
    default = compose(f"prune.method={method}")
    assert default.prune.layer_rates is None  # null: no layer has its own rate
    empty = compose(f"prune.method={method}", "prune.layer_rates={}")
    assert OmegaConf.to_container(empty.prune)["layer_rates"] == {}
    old = _without(default, "prune", "layer_rates")
    for cfg in (default, empty):
        assert ticket_key(cfg) == ticket_key(old)
        assert cell_key(cfg) == cell_key(old)
        for level in (1, 2, 12):
            assert imp_level_key(cfg, level) == imp_level_key(old, level)


def test_a_non_empty_layer_rate_changes_the_ticket_and_level_identities(compose: Callable[..., object]) -> None:
    plain = compose("prune.method=imp")
    own = compose("prune.method=imp", "prune.layer_rates={predictions:0.1}")
    other = compose("prune.method=imp", "prune.layer_rates={predictions:0.15}")
    assert len({ticket_key(plain), ticket_key(own), ticket_key(other)}) == 3
    for level in (1, 2):
        assert len({imp_level_key(plain, level), imp_level_key(own, level), imp_level_key(other, level)}) == 3
    assert dense_hash(own) == dense_hash(plain)  # the dense parent is shared


@pytest.mark.parametrize("data", ["digits", "synthetic", "fashion_mnist"])
def test_three_channels_or_none_keep_the_dense_hash_and_one_changes_it(compose: Callable[..., object],
                                                                      data: str, tmp_path: Path) -> None:
    extra = [f"data.path={_fashion_folder(tmp_path)}"] if data == "fashion_mnist" else []
    cfg = compose(f"data={data}", *extra)
    assert cfg.data.channels == 3  # MobileNetV2 has no model.input_channels: RGB
    assert dense_hash(compose(f"data={data}", *extra, "data.channels=3")) == dense_hash(cfg)
    assert dense_hash(_without(cfg, "data", "channels")) == dense_hash(cfg)
    assert dense_hash(compose(f"data={data}", *extra, "data.channels=1")) != dense_hash(cfg)


def test_lenet_reads_grey_images_and_its_channels_are_part_of_its_identity(compose: Callable[..., object]) -> None:
    grey = compose("model=lenet_300_100", "data=synthetic")
    assert grey.data.channels == 1
    rgb = compose("model=lenet_300_100", "data=synthetic", "data.channels=3")
    assert dense_hash(grey) != dense_hash(rgb)
    assert dense_hash(_without(grey, "data", "channels")) == dense_hash(rgb)  # absent means 3
