"""The linear path and its barrier: exact ends, exact zeros, and the stability group's checks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lth.config.vocabulary import ConfigError
from lth.stability.path import PathErrors, alphas, interpolate, masked_nonzero


def _copies(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    mask = rng.random((6, 5)) < 0.3
    first = {"dense/kernel": (rng.normal(size=(6, 5)) * mask).astype("float32"),
             "bn/moving_mean": rng.normal(size=5).astype("float32"), "seed_generator/state": np.array([3, 4])}
    second = {"dense/kernel": (rng.normal(size=(6, 5)) * mask).astype("float32"),
              "bn/moving_mean": rng.normal(size=5).astype("float32"), "seed_generator/state": np.array([3, 4])}
    return first, second, {"dense": mask}


def test_the_ends_of_the_path_are_the_copies_and_pruned_weights_stay_exactly_zero() -> None:
    first, second, masks = _copies()
    assert np.array_equal(interpolate(first, second, 0.0)["dense/kernel"], second["dense/kernel"])
    np.testing.assert_allclose(interpolate(first, second, 1.0)["dense/kernel"], first["dense/kernel"], atol=1e-6)
    for alpha in alphas(30):
        mixed = interpolate(first, second, float(alpha))
        assert masked_nonzero(mixed, masks) == 0
        assert np.all(mixed["dense/kernel"][~masks["dense"]] == 0.0)
        assert mixed["dense/kernel"].dtype == np.float32
        assert np.array_equal(mixed["seed_generator/state"], first["seed_generator/state"])  # not a weight


def test_identical_copies_give_the_same_weights_at_every_alpha_so_a_barrier_of_exactly_zero() -> None:
    first, _, _ = _copies()
    twin = {path: value.copy() for path, value in first.items()}
    for alpha in alphas(30):
        mixed = interpolate(first, twin, float(alpha))
        assert all(np.array_equal(mixed[path], first[path]) for path in first)
    flat = PathErrors(tuple(alphas(3)), (0.25, 0.25, 0.25), 0)
    assert flat.barrier == 0.0


def test_the_barrier_is_the_highest_error_above_the_mean_of_the_ends() -> None:
    found = PathErrors(tuple(alphas(5)), (0.10, 0.30, 0.50, 0.20, 0.14), 0)
    assert found.barrier == pytest.approx(0.50 - 0.12)
    assert len(alphas(30)) == 30 and alphas(30)[0] == 0.0 and alphas(30)[-1] == 1.0


def test_a_leak_is_counted() -> None:
    first, second, masks = _copies()
    broken = dict(first)
    broken["dense/kernel"] = first["dense/kernel"] + 1.0
    assert masked_nonzero(interpolate(broken, second, 0.5), masks) == int((~masks["dense"]).sum())
    with pytest.raises(ValueError, match="different variables"):
        interpolate(first, {"dense/kernel": second["dense/kernel"]}, 0.5)


@pytest.mark.parametrize(("override", "message"), [
    ("stability.points=1", "stability.points must be in [2, inf)"),
    ("stability.bn=average", "stability.bn must be recompute or interpolate"),
    ("stability.threshold=2", "stability.threshold must be in (0, 1)"),
    ("stability.reference=ticket", "stability.reference must be dense or cell"),
    ("stability.data_seeds=[]", "stability.data_seeds must be null or a non-empty list"),
    ("stability.candidates=[0,99]", "reset.epoch=99 (in stability.candidates) is after the end of training"),
    ("prune.method=imp", "stability=on analyses one-shot tickets and the dense network"),
    ("train.data_seed=-1", "train.data_seed must be null or a non-negative integer"),
])
def test_a_stability_group_that_cannot_run_fails_in_one_line(compose: Callable[..., object], override: str,
                                                             message: str) -> None:
    from lth.validation.validate import validate_config

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate_config(compose("stability=on", "reset.epoch=auto", override))


def test_auto_is_resolved_to_an_explicit_epoch_with_the_same_identity(compose: Callable[..., object]) -> None:
    from lth.config.cell import Cell
    from lth.tracking.identity import ticket_key

    auto = Cell.of(compose("reset.epoch=auto", "stability=on")).with_reset_epoch(2)
    assert auto.reset_epoch == 2
    assert ticket_key(auto) == ticket_key(compose("reset.epoch=2"))
    with pytest.raises(RuntimeError, match="must be resolved"):
        _ = Cell.of(compose("reset.epoch=auto")).reset_epoch


def test_copies_default_to_the_next_data_seed_and_the_analysis_key_follows_its_settings(
        compose: Callable[..., object]) -> None:
    from lth.config.cell import Cell
    from lth.stability.analysis import analysis_key
    from lth.stability.copies import Subject, copy_seeds

    assert copy_seeds(Cell.of(compose("stability=on"))) == (1,)
    assert copy_seeds(Cell.of(compose("stability=on", "train.data_seed=7"))) == (8,)
    assert copy_seeds(Cell.of(compose("stability=on", "stability.data_seeds=[3,5]"))) == (3, 5)
    subject = Subject("run", "key", "t=0.80 k=1", 0.8, 1, 0, None, None)  # type: ignore[arg-type]
    base = analysis_key(Cell.of(compose("stability=on")), subject)
    assert analysis_key(Cell.of(compose("stability=on", "stability.threshold=0.05")), subject) == base  # a verdict only
    assert analysis_key(Cell.of(compose("stability=on", "stability.bn=interpolate")), subject) != base
    assert analysis_key(Cell.of(compose("stability=on", "stability.points=10")), subject) != base


def _two_batch_norms() -> tuple[object, list[object]]:
    """Conv -> BN -> ReLU -> Conv -> BN -> logits, with BN weights and moving statistics far from their defaults."""
    import keras

    keras.utils.set_random_seed(3)
    layers = [keras.layers.Conv2D(4, 3, name="conv_a"), keras.layers.BatchNormalization(epsilon=1e-3, name="bn_a"),
              keras.layers.ReLU(name="relu_a"), keras.layers.Conv2D(3, 1, name="conv_b"),
              keras.layers.BatchNormalization(epsilon=1e-3, name="bn_b")]
    inputs = keras.Input((6, 6, 2))
    hidden = inputs
    for layer in layers:
        hidden = layer(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(hidden)))
    rng = np.random.default_rng(4)
    for bn in (layers[1], layers[4]):
        size = bn.gamma.shape
        bn.set_weights([rng.uniform(0.5, 2.0, size), rng.normal(0.5, 1.0, size), rng.normal(3.0, 1.0, size),
                        rng.uniform(5.0, 9.0, size)])  # moving statistics no batch has: only a recompute moves them
    return model, layers


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    return flat.mean(axis=0), flat.var(axis=0)  # the biased variance, as BatchNorm normalises with


def test_recomputed_batch_norm_statistics_are_the_mean_over_batches_of_each_layers_batch_moments() -> None:
    """Each BN layer's moving mean and variance become the average over the batches of its input's batch mean and
    biased variance, where its input comes through earlier BN layers normalising with their batch's own moments."""
    from lth.stability.path import recompute_batch_norm

    model, (conv_a, bn_a, _, conv_b, bn_b) = _two_batch_norms()
    rng = np.random.default_rng(5)
    batches = [rng.normal(size=(8, 6, 6, 2)).astype("float32") for _ in range(3)]
    gamma, beta = (np.asarray(bn_a.gamma.numpy(), np.float64), np.asarray(bn_a.beta.numpy(), np.float64))
    expected: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"bn_a": [], "bn_b": []}
    for images in batches:  # by hand: the layers' own kernels, the normalisation written out
        first = np.asarray(conv_a(images).numpy(), np.float64)
        expected["bn_a"].append(_moments(first))
        mean, variance = expected["bn_a"][-1]
        normalised = np.maximum(gamma * (first - mean) / np.sqrt(variance + 1e-3) + beta, 0.0)
        expected["bn_b"].append(_moments(np.asarray(conv_b(normalised.astype("float32")).numpy(), np.float64)))
    assert recompute_batch_norm(model, batches) is not None
    for bn in (bn_a, bn_b):
        means, variances = zip(*expected[bn.name])
        np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-5, atol=1e-5,
                                   err_msg=bn.name)
        np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean(variances, axis=0), rtol=1e-5, atol=1e-5,
                                   err_msg=bn.name)


def test_a_sweep_with_auto_must_run_the_reference_replicate_every_replicate_decides_from(
        compose: Callable[..., object]) -> None:
    from lth.config.cell import Cell
    from lth.stability.checks import check_auto_reference
    from lth.validation.validate import validate_config

    def sweep(*replicates: str, extra: tuple[str, ...] = ()) -> list[Cell]:
        return [validate_config(compose("reset.epoch=auto", *extra, *replicate.split())) for replicate in replicates]

    check_auto_reference(sweep("train.seed=0", "train.seed=1"))
    check_auto_reference(sweep("train.seed=1", "train.seed=2", extra=("stability.reference_seed=1",)))
    for replicates in (("train.seed=1", "train.seed=2"), ("train.seed=0 train.data_seed=5",)):
        with pytest.raises(ConfigError, match="from train.seed=0 with its data in its own order"):
            check_auto_reference(sweep(*replicates))
    check_auto_reference([validate_config(compose("reset.epoch=2", "train.seed=3"))])  # only auto jobs are checked
