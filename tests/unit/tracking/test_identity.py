"""Run identities: stable hashes of exactly the keys that decide a result."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from omegaconf import OmegaConf, open_dict

from lth.tracking.identity import cell_key, dense_hash, flatten, stable_hash, ticket_key

# Golden values: a change here means every existing dense parent stops being found.
GOLDEN_PAYLOAD_HASH = "84bdd9ed3998f668"
GOLDEN_DEFAULT_DENSE_HASH = "a513945e451ac010"


def test_stable_hash_golden_value_ignores_key_order() -> None:
    assert stable_hash({"b": [1, 2], "a": {"x": 0.5}}) == GOLDEN_PAYLOAD_HASH
    assert stable_hash({"a": {"x": 0.5}, "b": [1, 2]}) == GOLDEN_PAYLOAD_HASH


def test_default_config_dense_hash_is_pinned(compose: Callable[..., object]) -> None:
    assert dense_hash(compose()) == GOLDEN_DEFAULT_DENSE_HASH


@pytest.mark.parametrize("override", [
    "prune.threshold=0.3", "reset.epoch=3", "prune.scope=layer", "tracking.uri=sqlite:///other.db",
    "tracking.experiment=other", "lth.state_dir=/elsewhere", "lth.verbose=0",
])
def test_dense_hash_ignores_keys_that_do_not_decide_the_dense_run(compose: Callable[..., object], override: str) -> None:
    assert dense_hash(compose(override)) == dense_hash(compose())


@pytest.mark.parametrize("override", [
    "train.seed=1", "train.epochs=16", "train.learning_rate=0.1", "model.alpha=0.5",
    "data.split_seed=1", "model=mobilenet_v2", "data=synthetic",
])
def test_dense_hash_changes_with_keys_that_decide_the_dense_run(compose: Callable[..., object], override: str) -> None:
    assert dense_hash(compose(override)) != dense_hash(compose())


def test_ticket_key_depends_on_prune_and_reset_but_not_tracking(compose: Callable[..., object]) -> None:
    base = ticket_key(compose())
    assert ticket_key(compose("prune.threshold=0.3")) != base
    assert ticket_key(compose("reset.epoch=2")) != base
    assert ticket_key(compose("train.seed=3")) != base
    assert ticket_key(compose("tracking.experiment=x")) == base


def test_flatten_uses_dotted_keys_and_json_lists() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}


def test_number_spelling_and_ignore_order_do_not_change_identities(compose: Callable[..., object]) -> None:
    assert ticket_key(compose("prune.threshold=0")) == ticket_key(compose("prune.threshold=0.0"))
    assert dense_hash(compose("train.weight_decay=0")) == dense_hash(compose("train.weight_decay=0.0"))
    assert ticket_key(compose("prune.ignore=[Conv1,predictions]")) == ticket_key(compose("prune.ignore=[predictions,Conv1]"))


def test_keys_a_method_does_not_use_do_not_split_runs(compose: Callable[..., object]) -> None:
    assert ticket_key(compose("prune.levels=5")) == ticket_key(compose())  # one-shot ignores IMP keys
    assert ticket_key(compose("prune.method=imp", "prune.threshold=0.3")) == ticket_key(compose("prune.method=imp"))
    assert ticket_key(compose("prune.control_seed=4")) == ticket_key(compose())  # no control, no control seed
    assert ticket_key(compose("prune.control=reinit", "prune.control_seed=4")) != ticket_key(
        compose("prune.control=reinit"))


@pytest.mark.parametrize("override", ["train.devices=4", "train.steps_per_execution=8", "train.lr_reference_batch=512"])
def test_hardware_keys_keep_the_dense_identity(compose: Callable[..., object], override: str) -> None:
    assert dense_hash(compose(override)) == dense_hash(compose()) == GOLDEN_DEFAULT_DENSE_HASH


@pytest.mark.parametrize("key", ["backend", "precision", "sync_bn", "lr_scaling", "lr_reference_batch",
                                 "weight_decay_mode"])
def test_a_config_from_before_a_later_key_existed_keeps_its_identity(compose: Callable[..., object], key: str) -> None:
    # The golden hash predates these keys: a config that lacks the key (as every config did then)
    # and today's config with the key at its default must be the same dense parent.
    cfg = compose()
    without = OmegaConf.create(OmegaConf.to_container(compose()))  # plain: the declared schema lets no key go
    with open_dict(without):
        del without.train[key]
    assert key in cfg.train
    assert dense_hash(without) == dense_hash(cfg) == GOLDEN_DEFAULT_DENSE_HASH


@pytest.mark.parametrize("override", ["train.precision=mixed_bfloat16", "train.backend=jax", "train.lr_scaling=linear",
                                      "train.weight_decay_mode=l2"])
def test_numerics_keys_change_the_dense_identity(compose: Callable[..., object], override: str) -> None:
    assert dense_hash(compose(override)) != dense_hash(compose())


def test_sync_bn_is_hashed_only_where_it_changes_the_numbers(compose: Callable[..., object]) -> None:
    # TensorFlow on several devices: per-replica vs global BatchNorm statistics differ.
    assert dense_hash(compose("train.sync_bn=true", "train.devices=4")) != dense_hash(compose("train.devices=4"))
    assert dense_hash(compose("train.sync_bn=true")) != dense_hash(compose())  # devices=auto: may be several GPUs
    # One device, or JAX (whose data parallelism computes BatchNorm over the global batch): no effect.
    assert dense_hash(compose("train.sync_bn=true", "train.devices=1")) == GOLDEN_DEFAULT_DENSE_HASH
    assert dense_hash(compose("train.sync_bn=true", "train.backend=jax")) == dense_hash(compose("train.backend=jax"))


@pytest.mark.parametrize(("base", "unused"), [
    ((), "train.step_milestones=[5,10]"),                          # cosine ignores the step schedule's milestones
    ((), "train.step_gamma=0.5"),                                  # ... and its factor
    (("train.lr_schedule=step",), "train.warmup_epochs=3"),        # warm-up is cosine only
    (("train.lr_schedule=constant",), "train.step_milestones=[5]"),
    (("train.optimizer=adamw",), "train.momentum=0.5"),            # AdamW has no momentum key
    (("train.weight_decay=0",), "train.weight_decay_mode=l2"),     # no decay: its mode means nothing
])
def test_keys_that_do_not_decide_the_run_are_not_hashed(compose: Callable[..., object], base: tuple[str, ...],
                                                         unused: str) -> None:
    assert dense_hash(compose(*base, unused)) == dense_hash(compose(*base))


@pytest.mark.parametrize("override", ["train.momentum=0.5", "train.warmup_epochs=2",
                                      "train.lr_schedule=step"])
def test_keys_that_decide_the_run_are_still_hashed(compose: Callable[..., object], override: str) -> None:
    assert dense_hash(compose(override)) != dense_hash(compose())


def test_structure_is_hashed_only_when_it_prunes_differently(compose: Callable[..., object]) -> None:
    default, none = compose(), compose("prune.structure=none")
    assert ticket_key(none) == ticket_key(default) and cell_key(none) == cell_key(default)
    cfg = OmegaConf.create(OmegaConf.to_container(compose("prune.threshold=0.5")))
    with open_dict(cfg):
        del cfg.prune["structure"]  # a config from before prune.structure existed: the same run as structure=none
    assert ticket_key(cfg) == ticket_key(compose("prune.threshold=0.5"))
    keys = {ticket_key(compose(f"prune.structure={s}")) for s in ("none", "xnnpack_1x1", "channel")}
    cells = {cell_key(compose(f"prune.structure={s}")) for s in ("none", "xnnpack_1x1", "channel")}
    assert len(keys) == 3 and len(cells) == 3  # each structure is a cell (a series) of its own in the report
    assert dense_hash(compose("prune.structure=channel")) == dense_hash(default)  # one dense parent for all


def test_on_collapse_does_not_split_tickets(compose: Callable[..., object]) -> None:
    # warn and refuse train the same ticket; refuse only declines to start a collapsed one.
    assert ticket_key(compose("prune.on_collapse=refuse")) == ticket_key(compose())


def test_cell_key_groups_seeds_and_controls_and_splits_everything_else(compose: Callable[..., object]) -> None:
    base = cell_key(compose())
    for same in (("train.seed=3",), ("prune.control=reinit",), ("prune.control=random_mask", "prune.control_seed=2")):
        assert cell_key(compose(*same)) == base, same
    for other in ("prune.min_density=0", "prune.ignore=[Conv1]", "prune.scope=erk", "prune.threshold=0.5",
                  "reset.epoch=0", "train.epochs=16"):
        assert cell_key(compose(other)) != base, other
    imp = cell_key(compose("prune.method=imp", "prune.levels=3"))
    assert cell_key(compose("prune.method=imp", "prune.levels=5")) == imp  # a level's cell is the same in both jobs
    assert cell_key(compose("prune.method=imp", "prune.rate=0.5")) != imp


def test_data_seed_is_hashed_only_when_set(compose: Callable[..., object]) -> None:
    """`train.data_seed: null` keeps every earlier identity; a set one is another dense run of the same family."""
    from lth.tracking.identity import family_hash

    assert dense_hash(compose("train.data_seed=null")) == GOLDEN_DEFAULT_DENSE_HASH
    noisy = compose("train.data_seed=7")
    assert dense_hash(noisy) != GOLDEN_DEFAULT_DENSE_HASH
    assert dense_hash(noisy) != dense_hash(compose("train.data_seed=8"))
    assert family_hash(noisy) == family_hash(compose())
    assert cell_key(noisy) == cell_key(compose())  # a replicate over SGD noise sits in the same report cell


def test_data_seed_drives_the_order_and_seed_the_initialisation(compose: Callable[..., object]) -> None:
    from lth.config.cell import Cell

    assert Cell.of(compose()).train.order_seed == 0
    cell = Cell.of(compose("train.seed=3", "train.data_seed=11"))
    assert (cell.train.seed, cell.train.order_seed) == (3, 11)
