"""Reuse a ticket elsewhere: its mask, rewound starting weights and final weights in one call."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import yaml
from omegaconf import DictConfig, OmegaConf

from lth import tracking
from lth.config.cell import ModelConfig
from lth.config.pieces import piece
from lth.pruning.masks import Masks, attach_masks, load_masks
from lth.tracking import schema
from lth.training.models import Weights, build_model, load_weights, restore


@dataclass(frozen=True)
class Ticket:
    """A ticket loaded from MLflow.

    Attributes:
        model: MobileNetV2 holding the chosen weights, masks attached (masked weights stay zero if trained).
        masks: Boolean masks per pruned layer.
        start_weights: The rewound weights the ticket started from (dense epoch k x mask).
        final_weights: The weights after sparse training.
        config: The model, data and train config the ticket was trained with.
        run_id: The run the files came from (the last level's run for an IMP job).
    """

    model: keras.Model
    masks: Masks
    start_weights: Weights
    final_weights: Weights
    config: DictConfig
    run_id: str


def _config_from_params(params: dict[str, str]) -> DictConfig:
    """The model, data and train groups from a run's params (lth.tracking.identity.flatten wrote them)."""
    tree: dict[str, dict[str, object]] = {}
    for key, value in params.items():
        group, _, name = key.partition(".")
        if group in ("model", "data", "train") and "." not in name:
            # str(None) is how a null was logged; YAML would read it back as the string "None".
            tree.setdefault(group, {})[name] = None if value == "None" else yaml.safe_load(value)
    return OmegaConf.create(tree)


def _files_run(run_id: str) -> str:
    """The run that holds the mask: the ticket itself, or an IMP job's last level.

    The level is found by its key (tag `lth.last_level_key`): a level the job reused
    from a longer job is that job's child, not this one's. Jobs from before the tag, and
    unfinished ones, fall back to their own last finished child.
    """
    run = tracking.get_run(run_id)
    if run.data.tags.get(schema.METHOD) != "imp" or run.data.tags.get(schema.ROLE) != schema.TICKET_ROLE:
        return run_id
    key = run.data.tags.get(schema.LAST_LEVEL_KEY)
    last = None if key is None else tracking.finished_run(
        tracking.find_runs(run.info.experiment_id, schema.LEVEL_ROLE, key, run.data.tags.get(schema.DENSE_RUN)))
    if last is not None:
        return last.info.run_id
    levels = tracking.finished_children(run.info.experiment_id, run_id)
    if not levels:
        raise ValueError(f"IMP run {run_id} has no finished level")
    return max(levels, key=lambda r: int(r.data.tags[schema.LEVEL])).info.run_id


def load_ticket(run_id: str, tracking_uri: str | None = None, weights: str = "final") -> Ticket:
    """Load a finished ticket into a compiled Keras model with its masks re-attached.

    Args:
        run_id: A ticket (or control, or IMP job) run id.
        tracking_uri: MLflow tracking URI; None keeps the current one.
        weights: `final` (after sparse training) or `start` (the rewound ticket, untrained).
    """
    if weights not in ("final", "start"):
        raise ValueError(f"weights must be 'final' or 'start', got {weights!r}")
    if tracking_uri is not None:
        tracking.connect_uri(tracking_uri)
    files_run = _files_run(run_id)
    run = tracking.get_run(run_id)
    if run.data.tags.get(schema.ROLE) == schema.LEVEL_ROLE:  # IMP levels log no params: their job does
        run = tracking.get_run(run.data.tags[schema.PARENT])
    config = _config_from_params(run.data.params)
    masks = tracking.fetch(files_run, schema.MASK, load_masks)
    start = tracking.fetch(files_run, schema.START_WEIGHTS, load_weights)
    final = tracking.fetch(files_run, schema.FINAL_WEIGHTS, load_weights)
    model = build_model(piece(ModelConfig, config.model, "model", known_only=True), int(config.train.seed))
    restore(model, final if weights == "final" else start)
    attach_masks(model, masks)
    model.compile(
        optimizer=keras.optimizers.SGD(float(config.train.learning_rate), momentum=float(config.train.momentum)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return Ticket(model, masks, start, final, config, files_run)
