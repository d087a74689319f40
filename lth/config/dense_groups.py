"""The groups that decide a dense parent, each key declared once (lth.config.declare): model, data, train.

Every key says what it sets, its range, and when it is ignored; a default is what a config written before
the key existed meant, so old configs still build. lth.tracking.identity hashes these groups as declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lth.config.declare import key, unless, when
from lth.config.vocabulary import Backend, LrScaling, Optimizer, Precision, Schedule, WeightDecayMode

MOBILENET, LENET = "mobilenet_v2", "lenet_300_100"
ARRAYS, SHARDS = ("digits", "fashion_mnist", "synthetic"), ("imagenet",)  # lth.data.arrays, lth.data.shard_pipeline


@dataclass(frozen=True)
class ModelConfig:
    """The `model` group: which network, at which size."""

    name: Literal["mobilenet_v2", "lenet_300_100"] = key("architecture family built by lth.training.models")
    input_size: int = key("square input side in pixels", bounds="[1, inf)")
    num_classes: int = key("classifier width (follows data.num_classes)", bounds="[1, inf)")
    input_channels: int = key("channels of the input: 1 for LeNet's grey images", 3, bounds="[1, inf)", before=3)
    alpha: float = key("MobileNetV2's width multiplier", 1.0, bounds="(0, inf)", ignored=unless("name", MOBILENET))
    bn_momentum: float = key("MobileNetV2's BatchNorm momentum: 0.999 (Keras') for ImageNet-length schedules, 0.9 "
                             "for a few hundred steps", 0.999, bounds="[0, 1]", ignored=unless("name", MOBILENET))
    hidden_units: tuple[int, ...] = key("LeNet's hidden ReLU widths (fc1, fc2, ...)", (),
                                        ignored=unless("name", LENET))


@dataclass(frozen=True)
class DataConfig:
    """The `data` group: one dataset's loader and split; a key a loader does not read is ignored."""

    name: Literal["digits", "fashion_mnist", "synthetic", "imagenet"] = key(
        "dataset: digits, fashion_mnist and synthetic are arrays (lth.data.arrays), imagenet TFRecord shards")
    num_classes: int = key("labels in the dataset", bounds="[1, inf)")
    image_size: int | None = key("images are brought to this side (the model's input)", None)
    channels: int = key("1: the grey image; 3: grey copied to RGB (the model's input_channels)", 3,
                        ignored=unless("name", *ARRAYS), before=3)
    path: str | None = key("folder of the files; hashed as their content, never as the path", None,
                           ignored=unless("name", "fashion_mnist", *SHARDS), by_content=True)
    split_seed: int = key("fixes the splits independently of train.seed", 0, ignored=unless("name", *ARRAYS))
    test_fraction: float | None = key("held-out test share, stratified, evaluated once at the end", None,
                                      bounds="(0, 0.5)", ignored=unless("name", "digits"))
    val_fraction: float | None = key("validation share of the training part, evaluated every epoch", None,
                                     bounds="(0, 0.5)", ignored=unless("name", "digits", "fashion_mnist"))
    train_limit: int | None = key("keep the first N training images; null keeps all", None, bounds="[1, inf)",
                                  ignored=unless("name", "digits", "fashion_mnist", *SHARDS))
    val_limit: int | None = key("validate on the first N images; null: all", None, bounds="[1, inf)",
                                ignored=unless("name", *SHARDS))
    test_limit: int | None = key("test on the first N images; null: all", None, bounds="[1, inf)",
                                 ignored=unless("name", "fashion_mnist", *SHARDS))
    train_size: int | None = key("generated training images", None, bounds="[1, inf)",
                                 ignored=unless("name", "synthetic"))
    val_size: int | None = key("generated validation images", None, bounds="[1, inf)",
                               ignored=unless("name", "synthetic"))
    test_size: int | None = key("generated test images", None, bounds="[1, inf)", ignored=unless("name", "synthetic"))
    val_split: str | None = key("the manifest split validated every epoch (train, val, holdout)", None,
                                ignored=unless("name", *SHARDS))
    test_split: str | None = key("the manifest split tested once at the end", None, ignored=unless("name", *SHARDS))
    read_parallelism: int = key("training files read at once", 8, bounds="[1, inf)", ignored=unless("name", *SHARDS))
    shuffle_buffer: int = key("records mixed per epoch", 10000, bounds="[1, inf)", ignored=unless("name", *SHARDS))
    cache: str | None = key("null, memory, or a file prefix to cache decoded records", None,
                            ignored=unless("name", *SHARDS))
    crop_area_range: tuple[float, ...] = key("random-resized crop: area fraction range", (0.08, 1.0),
                                             ignored=unless("name", *SHARDS))
    crop_aspect_range: tuple[float, ...] = key("random-resized crop: aspect ratio range", (0.75, 1.3333333),
                                               ignored=unless("name", *SHARDS))
    flip: bool = key("random left-right flips", True, ignored=unless("name", *SHARDS))
    eval_crop_fraction: float = key("central crop of the shorter side at evaluation", 0.875, bounds="(0, 1]",
                                    ignored=unless("name", *SHARDS))


@dataclass(frozen=True)
class TrainConfig:
    """The `train` group: schedule, optimizer, seed, and where and how precisely the run computes."""

    epochs: int = key("E: the dense run trains epochs 0..E, a ticket k..E", bounds="[1, inf)")
    batch_size: int = key("global batch size", bounds="[1, inf)")
    learning_rate: float = key("peak learning rate", bounds="(0, inf)")
    seed: int = key("initial weights (and the data order unless data_seed is set)", bounds="[0, inf)",
                    varies_across="replicates")
    optimizer: Optimizer = key("sgd (with momentum), adamw, or adam (weight decay, if any, decoupled)", "sgd")
    momentum: float = key("SGD momentum", 0.9, bounds="[0, 1)", ignored=when("optimizer", "adamw", "adam"),
                          hashed_as=0.9)
    weight_decay: float = key("weight decay, acting as weight_decay_mode says; masked weights stay zero", 0.0,
                              bounds="[0, inf)")
    lr_schedule: Schedule = key("cosine, step or constant, a function of the optimizer step (resumed at epoch k)",
                                "cosine")
    warmup_epochs: int = key("linear warm-up epochs before the cosine schedule", 0, bounds="[0, inf)",
                             ignored=unless("lr_schedule", "cosine"), hashed_as=0)
    step_milestones: tuple[int, ...] = key("epochs at which the step schedule multiplies the rate by step_gamma", (),
                                           ignored=unless("lr_schedule", "step"), hashed_as=[])
    step_gamma: float = key("factor of the step schedule", 0.1, bounds="(0, inf)",
                            ignored=unless("lr_schedule", "step"), hashed_as=0.1)
    backend: Backend = key("Keras backend: tensorflow, or jax (array datasets)", "tensorflow", before="tensorflow")
    devices: int | Literal["auto"] = key("devices one run trains on: auto (every GPU the job sees, else the CPU) or a "
                                         "count; several = data parallel at the same global batch_size", "auto",
                                         bounds="[1, inf)", runtime=True)
    precision: Precision = key("Keras dtype policy; masks act on float32 master weights", "float32",
                               before="float32")
    sync_bn: bool = key("data parallel on TensorFlow: BatchNorm over the global batch, not each replica's slice",
                        False, ignored=(when("backend", "jax"), when("devices", 1)), hashed_as=False, before=False)
    lr_scaling: LrScaling = key("none: learning_rate as given; linear: learning_rate * batch_size / "
                                "lr_reference_batch (Goyal et al. 2017)", "none", before="none")
    lr_reference_batch: int = key("the batch size learning_rate refers to under lr_scaling=linear", 256,
                                  bounds="[1, inf)", ignored=when("lr_scaling", "none"), before=256)
    steps_per_execution: int = key("optimizer steps per call into the compiled step (fewer host round trips)", 1,
                                   bounds="[1, inf)", runtime=True)
    weight_decay_mode: WeightDecayMode = key(
        "decoupled (the optimizer shrinks every variable) or l2 ((weight_decay/2)*sum(w^2) of the kernels in the "
        "loss, TF-slim's)", "decoupled", ignored=when("weight_decay", 0, None), before="decoupled")
    data_seed: int | None = key("SGD noise: example order and augmentation; null = seed", None, bounds="[0, inf)",
                                before=None, varies_across="replicates")

    @property
    def order_seed(self) -> int:
        """The seed of the data order and augmentation: `data_seed`, or `seed` when it is not set."""
        return self.seed if self.data_seed is None else self.data_seed
