"""LeNet-300-100 with Frankle & Carbin's IMP recipe, end to end through `lth.stages.cell_search.run_cell`.

One module-scoped store holds one dense parent (4 epochs of Adam on 256 grey 28x28x1 images),
its IMP ticket at 20% per level for fc1 and fc2 and 10% for the output layer (`prune.layer_rates`),
2 levels rewound to the initialisation, and that ticket's random-mask and reinit controls.

The images are self-made Fashion-MNIST IDX files (the format `data=fashion_mnist` reads): a weak
class signal (5 lit pixels of a class's 40) under 20 random lit pixels, 60% of the labels
random. A network learns the signal in about two epochs and then memorises the noise, so the
validation loss has its minimum before the last epoch (measured: epoch 2 of 4 for the dense
run, then it rises by about 0.3 per epoch) and the early-stop point is not simply the end.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.store import artifact, runs

SIZES = {"fc1": 784 * 300, "fc2": 300 * 100, "predictions": 100 * 10}  # 235,200 + 30,000 + 1,000
RATES = {"fc1": 0.2, "fc2": 0.2, "predictions": 0.1}  # prune.rate, and prune.layer_rates for the output layer
EPOCHS, LEVELS = 4, 2
CONTROLS = ("none", "random_mask", "reinit")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _fashion_files(folder: Path) -> Path:
    """640 training (128 of them validate) and 256 test images: weak signal, noisy labels."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    prototypes = [rng.choice(784, 40, replace=False) for _ in range(10)]
    for split, count in (("train", 640), ("t10k", 256)):
        classes = rng.integers(0, 10, count)
        images = np.zeros((count, 784), dtype=np.uint8)
        for row, label in zip(images, classes):
            row[rng.choice(prototypes[label], 5, replace=False)] = 255
            row[rng.choice(784, 20, replace=False)] = 255
        labels = np.where(rng.random(count) < 0.6, rng.integers(0, 10, count), classes)
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images.reshape(count, 28, 28))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def _overrides(store: Path, control: str) -> list[str]:
    return [
        "model=lenet_300_100", "data=fashion_mnist", f"data.path={store / 'fashion'}", "data.train_limit=256",
        "data.val_fraction=0.2", "data.test_limit=null",
        f"train.epochs={EPOCHS}", "train.optimizer=adam", "train.learning_rate=0.003", "train.batch_size=16",
        "train.lr_schedule=constant", "train.weight_decay=0",
        "prune.method=imp", "prune.scope=layer", "prune.rate=0.2", "prune.layer_rates={predictions:0.1}",
        "prune.min_density=0", f"prune.levels={LEVELS}", "reset.epoch=0", f"prune.control={control}",
        f"tracking.uri=sqlite:///{store / 'mlflow.db'}", "tracking.experiment=lth",
        f"lth.state_dir={store / 'state'}", "lth.keep_epochs=all", "lth.verbose=0",
    ]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Train the dense parent, the ticket and both controls once; hand out the store and configs."""
    import mlflow
    from hydra import compose, initialize_config_dir

    from lth.training.devices import select_backend
    from tests.support.paths import CONFIG_DIR

    store = tmp_path_factory.mktemp("lenet")
    _fashion_files(store / "fashion")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        configs = {control: compose(config_name="train", overrides=_overrides(store, control)) for control in CONTROLS}
    select_backend(str(configs["none"].train.backend))
    from lth.stages.cell_search import run_cell

    previous = mlflow.get_tracking_uri()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(store)  # the sqlite store's artifacts go to ./mlruns: the store's, not the repository's
            results = {control: run_cell(configs[control]) for control in CONTROLS}
    finally:
        mlflow.set_tracking_uri(previous)
    yield {"store": store, "configs": configs, "results": results, "runs": runs(store)}


def _levels(study: dict[str, object], control: str) -> dict[int, object]:
    found: dict[int, object] = {}
    for run in study["runs"]:
        tags = run.data.tags
        if tags["lth.role"] == "imp_level" and tags["lth.control"] == control:
            assert int(tags["lth.level"]) not in found, f"two {control} runs of level {tags['lth.level']}"
            found[int(tags["lth.level"])] = run
    assert sorted(found) == list(range(1, LEVELS + 1)), f"{control} levels: {sorted(found)}"
    return found


def _role(study: dict[str, object], role: str, control: str | None = None) -> object:
    matching = [run for run in study["runs"] if run.data.tags["lth.role"] == role
                and (control is None or run.data.tags["lth.control"] == control)]
    assert len(matching) == 1, f"{len(matching)} {role} runs ({control})"
    return matching[0]


def _kept(name: str, level: int) -> int:
    """size - round((1 - (1 - r)^level) * size): what a layer with its own rate keeps (scope=layer: every layer)."""
    return SIZES[name] - round((1 - (1 - RATES[name]) ** level) * SIZES[name])


def _counts(mask: dict[str, np.ndarray]) -> dict[str, int]:
    return {name: int(np.count_nonzero(mask[name])) for name in SIZES}


def _history(study: dict[str, object], run: object, metric: str) -> dict[int, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{study['store'] / 'mlflow.db'}")
    points = client.get_metric_history(run.info.run_id, metric)
    assert len({point.step for point in points}) == len(points), f"{metric} logged twice at a step"
    return {point.step: point.value for point in points}


def _assert_rewound_to_the_init(store: Path, level: object, init: dict[str, np.ndarray],
                                mask: dict[str, np.ndarray]) -> None:
    """weights/start.npz is the dense initialisation times the mask; weights/final.npz is zero off the mask."""
    start, final = artifact(store, level, "weights/start.npz"), artifact(store, level, "weights/final.npz")
    assert sorted(start) == sorted(init) == sorted(final)
    for path, value in init.items():
        layer = path.split("/")[0]
        expected = np.where(mask[layer], value, 0) if path.endswith("/kernel") and layer in mask else value
        np.testing.assert_array_equal(start[path], expected, err_msg=path)
    for name in SIZES:
        kernel = final[f"{name}/kernel"]
        assert np.count_nonzero(kernel[~mask[name]]) == 0, f"{name}: a masked weight is non-zero after training"
        assert not np.array_equal(kernel, start[f"{name}/kernel"]), f"{name}: did not train"


# --- a: the ticket ------------------------------------------------------------------------------


def test_imp_levels_keep_the_exact_per_layer_counts_by_magnitude_nested(study: dict[str, object]) -> None:
    from lth.pruning.scopes import imp_level_threshold

    store, levels = study["store"], _levels(study, "none")
    dense = _role(study, "dense")
    source = artifact(store, dense, "weights/final.npz")  # level 1 prunes the dense final weights
    before = {name: np.ones(source[f"{name}/kernel"].shape, dtype=bool) for name in SIZES}
    total = sum(SIZES.values())
    for level in range(1, LEVELS + 1):
        mask = artifact(store, levels[level], "mask.npz")
        assert sorted(mask) == sorted(SIZES)
        assert _counts(mask) == {name: _kept(name, level) for name in SIZES}, f"level {level}"
        for name in SIZES:
            assert not (mask[name] & ~before[name]).any(), f"level {level}: a pruned weight of {name} came back"
            magnitude = np.abs(source[f"{name}/kernel"])
            dropped = before[name] & ~mask[name]
            assert magnitude[mask[name]].min() >= magnitude[dropped].max(), f"level {level}: {name} not by magnitude"
        removed = total - sum(_counts(mask).values())
        assert float(levels[level].data.tags["lth.threshold"]) == removed / total
        assert imp_level_threshold(SIZES, 0.2, level, {"predictions": 0.1}) == removed / total
        assert levels[level].data.metrics["weights_remaining"] == 1 - removed / total
        before, source = mask, artifact(store, levels[level], "weights/final.npz")  # level 2 prunes level 1's
    assert (_counts(mask)["fc1"], _counts(mask)["fc2"], _counts(mask)["predictions"]) == (150528, 19200, 810)
    job = _role(study, "ticket", "none")
    assert job.info.status == "FINISHED" and job.data.tags["lth.last_level"] == str(LEVELS)
    assert study["results"]["none"].threshold == removed / total
    assert study["results"]["none"].weights_remaining == 1 - removed / total


def test_imp_levels_start_from_the_dense_init_times_their_mask(study: dict[str, object]) -> None:
    store, levels = study["store"], _levels(study, "none")
    init = artifact(store, _role(study, "dense"), "checkpoints/epoch_000.npz")
    for level in levels.values():
        _assert_rewound_to_the_init(store, level, init, artifact(store, level, "mask.npz"))


# --- b: the controls ----------------------------------------------------------------------------


def test_the_random_mask_control_moves_each_levels_survivors_and_starts_from_the_dense_init(
        study: dict[str, object]) -> None:
    store = study["store"]
    ticket, control = _levels(study, "none"), _levels(study, "random_mask")
    init = artifact(store, _role(study, "dense"), "checkpoints/epoch_000.npz")
    for level in range(1, LEVELS + 1):
        ours, theirs = artifact(store, control[level], "mask.npz"), artifact(store, ticket[level], "mask.npz")
        assert sorted(ours) == sorted(theirs)
        assert _counts(ours) == _counts(theirs) == {name: _kept(name, level) for name in SIZES}
        for name in SIZES:
            assert not np.array_equal(ours[name], theirs[name]), f"level {level}: {name} kept the ticket's positions"
        _assert_rewound_to_the_init(store, control[level], init, ours)
    job = _role(study, "ticket", "random_mask")
    assert job.info.status == "FINISHED"
    assert job.data.tags["lth.ticket_run_id"] == _role(study, "ticket", "none").info.run_id


def test_the_reinit_control_trains_the_tickets_masks_from_a_fresh_init(study: dict[str, object]) -> None:
    from lth.config.cell import Cell
    from lth.stages.sparse import control_seed
    from lth.training.models import build_model, snapshot

    store, cfg = study["store"], study["configs"]["reinit"]
    ticket, control = _levels(study, "none"), _levels(study, "reinit")
    cell = Cell.of(cfg)
    fresh = snapshot(build_model(cell.model, control_seed(cell.train.seed, cell.prune)))
    dense_init = artifact(store, _role(study, "dense"), "checkpoints/epoch_000.npz")
    for level in range(1, LEVELS + 1):
        ours, theirs = artifact(store, control[level], "mask.npz"), artifact(store, ticket[level], "mask.npz")
        assert sorted(ours) == sorted(theirs) and all(np.array_equal(ours[n], theirs[n]) for n in theirs)
        _assert_rewound_to_the_init(store, control[level], fresh, ours)
        start = artifact(store, control[level], "weights/start.npz")
        assert not np.array_equal(start["fc1/kernel"], np.where(ours["fc1"], dense_init["fc1/kernel"], 0))
    assert _role(study, "ticket", "reinit").info.status == "FINISHED"


# --- c: the early-stop point ----------------------------------------------------------------------


def _assert_early_stop_is_the_logged_minimum(study: dict[str, object], run: object) -> int:
    history = _history(study, run, "val_loss")
    assert sorted(history) == list(range(1, EPOCHS + 1))
    best = min(history, key=lambda step: (history[step], step))  # the first minimum
    metrics = run.data.metrics
    assert metrics["early_stop_epoch"] == best
    assert metrics["early_stop_val_loss"] == history[best]
    return best


def test_the_dense_early_stop_point_is_the_val_loss_minimum_evaluated_at_its_checkpoint(
        study: dict[str, object]) -> None:
    import keras

    from lth.config.cell import Cell
    from lth.data import load_data
    from lth.training.models import build_model, restore

    store, cfg = study["store"], study["configs"]["none"]
    dense = _role(study, "dense")
    best = _assert_early_stop_is_the_logged_minimum(study, dense)
    history = _history(study, dense, "val_loss")
    assert best < EPOCHS and history[EPOCHS] > history[best] + 0.05, f"val_loss {history}: the minimum is the end"
    metrics = dense.data.metrics
    assert metrics["early_stop_test_loss"] != metrics["test_loss"]

    cell = Cell.of(cfg)
    model = build_model(cell.model, cell.train.seed)
    restore(model, artifact(store, dense, f"checkpoints/epoch_{best:03d}.npz"))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    test = load_data(cell.data, cell.train.batch_size, cell.train.seed).test
    test_loss, test_accuracy = model.evaluate(test, verbose=0)
    assert abs(metrics["early_stop_test_accuracy"] - test_accuracy) <= 1e-6
    assert abs(metrics["early_stop_test_loss"] - test_loss) <= 1e-6
    restore(model, artifact(store, dense, "weights/final.npz"))  # the same model reproduces the final figures too
    final_loss, final_accuracy = model.evaluate(test, verbose=0)
    assert abs(metrics["test_accuracy"] - final_accuracy) <= 1e-6 and abs(metrics["test_loss"] - final_loss) <= 1e-6


def test_every_level_run_logs_the_early_stop_point_of_its_own_val_loss(study: dict[str, object]) -> None:
    for control in CONTROLS:
        for level, run in _levels(study, control).items():
            best = _assert_early_stop_is_the_logged_minimum(study, run)
            history = _history(study, run, "val_loss")
            # measured: every level overfits like its parent (minimum at epoch 1 or 2, the end 0.2-0.5 above it)
            assert best < EPOCHS and history[EPOCHS] > history[best] + 0.05, (control, level, history)
            assert run.data.metrics["early_stop_test_loss"] != run.data.metrics["test_loss"], (control, level)


# --- d: the framework's own tools work on LeNet unchanged ----------------------------------------------


def test_load_ticket_rebuilds_the_lenet_ticket_with_its_last_level(study: dict[str, object]) -> None:
    import mlflow

    from lth.export import load_ticket

    store, levels = study["store"], _levels(study, "none")
    job = _role(study, "ticket", "none")
    previous = mlflow.get_tracking_uri()
    try:
        ticket = load_ticket(job.info.run_id, tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    finally:
        mlflow.set_tracking_uri(previous)  # load_ticket connects the process to the store
    assert ticket.run_id == levels[LEVELS].info.run_id
    assert ticket.model.name == "lenet_300_100" and tuple(ticket.model.input_shape) == (None, 28, 28, 1)
    logged = artifact(store, levels[LEVELS], "mask.npz")
    assert sorted(ticket.masks) == sorted(logged) and all(np.array_equal(ticket.masks[n], logged[n]) for n in logged)
    final = artifact(store, levels[LEVELS], "weights/final.npz")
    for name in SIZES:
        np.testing.assert_array_equal(ticket.model.get_layer(name).kernel.numpy(), final[f"{name}/kernel"])
