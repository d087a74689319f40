"""The batches every epoch trains on are the (seed, epoch) order, on JAX and on TensorFlow alike.

A ticket rewound to epoch k must see the batches its dense parent saw from epoch k on,
so what the train step really receives is recorded (on JAX in a fresh process, where
Keras' first `fit` pulls a batch to build its metrics) and compared with
`lth.data.splits.epoch_order`, the one order function of both backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import lth_env

SEED, BATCH, COUNT, EPOCHS = 3, 8, 168, 4  # 21 steps an epoch: more than the prefetch queue holds
DATA = {"name": "synthetic", "num_classes": 10, "image_size": 8, "train_size": COUNT, "val_size": 16,
        "test_size": 16, "split_seed": 0}

# Runs in a fresh `KERAS_BACKEND=jax` process where TensorFlow cannot be imported. The model
# records the images of every batch its train step receives (run eagerly, so they are concrete),
# trained by lth's own fit loop: first fit of the process (epochs 0..E), then a second fit of the
# same compiled model from epoch 1, as a ticket reusing the process's network does.
JAX_RECORDER = """
import json, sys

class NoTensorFlow:  # as on a machine without TensorFlow: the JAX path must not need it
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoTensorFlow())
from pathlib import Path
import keras, numpy as np
from omegaconf import OmegaConf
from lth.config.cell import DataConfig
from lth.config.pieces import piece
from lth.data import load_data
from lth.training.fitting import fit_and_evaluate

data_cfg = piece(DataConfig, json.loads(sys.argv[1]), "data")
seed, batch, epochs, out = *map(int, sys.argv[2:5]), sys.argv[5]
data = load_data(data_cfg, batch, seed)
index_of = {image.tobytes(): index for index, image in enumerate(data.train.images)}

class Recording(keras.Model):
    def __init__(self):
        super().__init__()
        self.flat, self.head, self.seen = keras.layers.Flatten(), keras.layers.Dense(10), []

    def call(self, images):
        return self.head(self.flat(keras.ops.cast(images, "float32") / 255.0))

    def train_step(self, state, batch_data):
        self.seen.append([index_of[image.tobytes()] for image in np.asarray(batch_data[0])])
        return super().train_step(state, batch_data)

model = Recording()
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"], run_eagerly=True)
fits = []
for start in (0, 1):
    model.seen = []
    fit_and_evaluate(model, data, epochs, start, Path(out).parent / f"backup{start}", lambda *_: None, 0)
    fits.append(model.seen)
Path(out).write_text(json.dumps({"fits": fits, "steps": data.steps_per_epoch}))
"""


def _expected(epoch: int, steps: int) -> np.ndarray:
    """The batches of one epoch under the (seed, epoch) order: shape (steps, BATCH)."""
    from lth.data.splits import epoch_order

    return epoch_order(SEED, epoch, COUNT)[: steps * BATCH].reshape(steps, BATCH)


def test_jax_trains_every_epoch_on_its_seed_epoch_order(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    env = {**lth_env(), "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", JAX_RECORDER, json.dumps(DATA), str(SEED), str(BATCH), str(EPOCHS),
                           str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    recorded = json.loads(out.read_text())
    steps = recorded["steps"]
    assert steps == COUNT // BATCH
    for fit, start in zip(recorded["fits"], (0, 1)):
        seen = np.array(fit)
        assert seen.shape == ((EPOCHS - start) * steps, BATCH)
        for epoch in range(start, EPOCHS):
            got = seen[(epoch - start) * steps: (epoch - start + 1) * steps]
            wrong = [step for step in range(steps) if not np.array_equal(got[step], _expected(epoch, steps)[step])]
            assert not wrong, f"fit from epoch {start}: epoch {epoch} trained other batches at steps {wrong}"


def test_tensorflow_pipeline_yields_the_same_seed_epoch_order() -> None:
    pytest.importorskip("tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the tf.data pipeline is the TensorFlow backend's")
    from lth.config.cell import DataConfig
    from lth.config.pieces import piece
    from lth.data import load_data

    data = load_data(piece(DataConfig, DATA, "data"), BATCH, SEED)
    index_of = {image.tobytes(): index for index, image in enumerate(_train_images())}
    steps = data.steps_per_epoch
    orders = {}
    for epoch in (0, 1, 2, 0):  # read again at every iterator start: epoch 0 twice gives the same batches
        data.begin_epoch(epoch)
        batches = [[index_of[image.tobytes()] for image in images.numpy()] for images, _ in data.train]
        orders.setdefault(epoch, []).append(np.array(batches))
        assert np.array_equal(orders[epoch][-1], _expected(epoch, steps)), f"epoch {epoch} is not epoch_order's"
    assert not np.array_equal(orders[0][0], orders[1][0])  # the order does change with the epoch


def _train_images() -> np.ndarray:
    from lth.config.cell import DataConfig
    from lth.config.pieces import piece
    from lth.data.arrays import LOADERS

    return LOADERS["synthetic"](piece(DataConfig, DATA, "data"))[0][0]


@pytest.mark.parametrize("tag", [None, "1"])
def test_a_finished_dense_run_of_another_data_order_is_not_reused(compose, tmp_path: Path, tag: str | None) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from lth import tracking
    from lth.config.cell import Cell
    from lth.data.splits import DATA_ORDER_VERSION, DataSplits
    from lth.stages.dense import ensure_dense
    from lth.tracking.identity import dense_hash
    from lth.tracking.schema import DATA_ORDER as DATA_ORDER_TAG
    from lth.validation.validate import ConfigError

    cfg = compose(f"lth.state_dir={tmp_path / 'state'}")
    splits = DataSplits(train=None, val=None, test=None, steps_per_epoch=4, summary="", epoch=None)
    previous = mlflow.get_tracking_uri()
    try:
        experiment = tracking.connect(f"sqlite:///{tmp_path / 'mlflow.db'}", "lth")
        tags = {"lth.keep_epochs": "0 15"} | ({DATA_ORDER_TAG: tag} if tag else {})
        old = tracking.create_run(experiment, "dense", dense_hash(cfg), "dense old", tags)
        MlflowClient().log_metric(old, "test_accuracy", 0.9)
        MlflowClient().set_terminated(old, "FINISHED")
        with pytest.raises(ConfigError) as refused:
            ensure_dense(Cell.of(cfg), experiment, splits)
        message = str(refused.value)
        assert "\n" not in message and old in message and "tracking.experiment" in message and "delete" in message
        assert f"lth.data_order={DATA_ORDER_VERSION}" in message

        MlflowClient().set_tag(old, DATA_ORDER_TAG, DATA_ORDER_VERSION)  # trained under this order: reused
        dense = ensure_dense(Cell.of(cfg), experiment, splits)
        assert dense.reused and dense.run_id == old
        assert dense.iterations_at(3) == 12  # no optimizer_iterations logged: epoch * steps_per_epoch
    finally:
        mlflow.set_tracking_uri(previous)
