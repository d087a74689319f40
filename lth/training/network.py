"""A compiled network with a mask on every prunable kernel, reused by the jobs of a process.

Tracing MobileNetV2's train step costs about 15 s on 2 CPU cores, more than a whole
small ticket trains. Every job of a local sweep has the same architecture and
schedule, so the process keeps one compiled network and reloads it per job: weights
are restored, the mask variables reassigned (all ones for a dense run) and the
optimizer state zeroed. Mask variables can change without re-tracing because the
constraints read them as variables, and they are attached before `compile()`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import keras
import numpy as np

from lth.config.cell import ModelConfig, TrainConfig
from lth.pruning.masks import PRUNABLE_LAYER_TYPES, attach_masks, prunable_layer_names
from lth.training.devices import data_parallel
from lth.training.fitting import build_optimizer
from lth.training.models import Weights, build_model, restore, snapshot


def attach_kernel_l2(model: keras.Model, weight_decay: float) -> list[keras.Variable]:
    """Put (weight_decay / 2) * sum(w^2) of every conv, depthwise and dense kernel into the loss.

    TF-slim's `l2_regularizer(weight_decay)` convention (`weight_decay * tf.nn.l2_loss(w)`):
    the gradient is weight_decay * w on kernels only; biases and BatchNorm are not decayed.
    Keras reads `variable.regularizer` when it traces the step, so call this before compile.

    Returns:
        The regularised kernels, in network order.
    """
    regularizer = keras.regularizers.L2(weight_decay / 2.0)
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, PRUNABLE_LAYER_TYPES)]
    for kernel in kernels:
        kernel.regularizer = regularizer
    return kernels


class MaskedNetwork:
    """A model compiled once, with every prunable kernel under a `MaskConstraint`.

    Attributes:
        model: The compiled Keras model.
        initial_weights: The seeded initialisation (the dense run's epoch 0).
        mask_variables: The 0/1 mask of each prunable layer, in network order.
        replicas: How many devices train it data-parallel (1: plain training).
    """

    def __init__(self, model: ModelConfig, train: TrainConfig, steps_per_epoch: int) -> None:
        # Variables, masks and the optimizer are created under the run's distribution, so
        # every replica holds them and the constraints run in every replica's step.
        with data_parallel(train) as self.replicas:
            self.model = build_model(model, train.seed, train.precision, train.sync_bn)
            self.initial_weights = snapshot(self.model)
            self.steps_per_epoch = steps_per_epoch
            names = prunable_layer_names(self.model)
            ones = {name: np.ones(self.model.get_layer(name).kernel.shape, dtype=bool) for name in names}
            self.mask_variables = attach_masks(self.model, ones)
            if train.weight_decay_mode == "l2":  # else the optimizer decays (build_optimizer)
                attach_kernel_l2(self.model, float(train.weight_decay))
            self.model.compile(
                optimizer=build_optimizer(train, steps_per_epoch, start_epoch=0),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                weighted_metrics=["accuracy"],  # weighted: padded evaluation rows (weight 0) do not count
                steps_per_execution=train.steps_per_execution,
            )
            # Built here, under the distribution, rather than at the first step: load() sets its state.
            self.model.optimizer.build(self.model.trainable_variables)

    def load(self, weights: Weights, masks: Mapping[str, np.ndarray] | None, start_epoch: int,
             start_iteration: int | None = None, loss_scale: float | None = None) -> None:
        """Prepare a fresh run: weights, masks (None = dense) and an optimizer at `start_epoch`.

        Layers missing from `masks` stay dense (e.g. those in `prune.ignore`).

        Args:
            weights: Every model variable, keyed by path.
            masks: The 0/1 mask of each pruned layer; None for a dense run.
            start_epoch: The epoch training starts at (0-based).
            start_iteration: The optimizer step to start the schedule from; default
                start_epoch * steps_per_epoch. A ticket passes its dense parent's count after
                epoch k, which mixed_float16's skipped steps can leave below k * S.
            loss_scale: mixed_float16's dynamic loss scale to start from (a ticket: its dense
                parent's at epoch k, so it does not skip steps again finding it); default
                the initial scale.
        """
        restore(self.model, weights)
        for name, variable in self.mask_variables.items():
            mask = masks.get(name) if masks is not None else None
            variable.assign(np.ones(variable.shape, "float32") if mask is None else np.asarray(mask, "float32"))
            kernel = self.model.get_layer(name).kernel
            kernel.assign(kernel.constraint(kernel.value))
        if keras.backend.backend() != "tensorflow":
            # JAX traces a variable that is not model state (the masks) as a constant, so a
            # new mask needs a new trace; TensorFlow reads the variables at every step.
            self.model.train_function = None
        optimizer = self.model.optimizer
        if optimizer.built:
            for variable in optimizer.variables:
                if not variable.path.endswith("learning_rate"):  # a constant rate is a variable too: keep it
                    variable.assign(np.zeros(variable.shape, variable.dtype))  # fresh slots, like a new optimizer
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):  # mixed_float16
                optimizer.dynamic_scale.assign(optimizer.initial_scale if loss_scale is None else loss_scale)
        optimizer.iterations.assign(start_epoch * self.steps_per_epoch if start_iteration is None else start_iteration)
        self.model._initial_epoch = None  # BackupAndRestore of an earlier job may have set it

    def snapshot(self) -> Weights:
        """Every variable of the model, keyed by path."""
        return snapshot(self.model)

    def optimizer_state(self) -> Weights:
        """Every variable of the optimizer (slots, step, loss scale, learning rate), keyed by path."""
        return {variable.path: np.array(variable.numpy()) for variable in self.model.optimizer.variables}


def network_for(model: ModelConfig, train: TrainConfig, steps_per_epoch: int) -> MaskedNetwork:
    """The process's compiled network for this architecture and schedule (built on first use).

    The pieces are frozen and hashable, so they are the cache key themselves. The data seed is
    left out: runs that differ only in SGD noise (stability copies) train the same network.
    """
    return _compiled(model, dataclasses.replace(train, data_seed=None), steps_per_epoch)


@functools.lru_cache(maxsize=1)
def _compiled(model: ModelConfig, train: TrainConfig, steps_per_epoch: int) -> MaskedNetwork:
    return MaskedNetwork(model, train, steps_per_epoch)
