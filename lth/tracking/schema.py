"""The MLflow schema of lth: every tag, metric and artifact name, each writer next to its reader.

Runs are found by tags, not params: `lth.role` (dense, ticket or imp_level) and `lth.key`
(the identity hash of lth.tracking.identity). Sparse runs carry `mlflow.parentRunId` =
their dense parent (an IMP level: its job), which is how the MLflow UI nests them.
Params are the flattened config groups (lth.tracking.artifacts.log_config); tags say what a
run is and how it ended; metrics are numbers. The report reads runs only through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lth.training.early_stop import EarlyStop

# Identity and lineage: written by lth.tracking.claim when it creates a run, searched by lth.tracking.client.
ROLE = "lth.role"  # dense, ticket (a one-shot ticket, a control or an IMP job) or imp_level
KEY = "lth.key"  # identity hash of the run's stage
DENSE_HASH = "lth.dense_hash"  # identity of the dense parent a run belongs to
FAMILY = "lth.family"  # dense identity without the seed: groups replicates in the report
DENSE_RUN = "lth.dense_run"  # the dense run a sparse run was rewound from: another one's runs are never reused
CELL = "lth.cell"  # ticket identity without seed and control: one cell of the report (identity.cell_key)
PARENT = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"
DENSE_ROLE, TICKET_ROLE, LEVEL_ROLE = "dense", "ticket", "imp_level"
STABILITY_ROLE, COPY_ROLE = "stability", "stability_copy"  # an instability analysis and its copies (lth.stability)
# On the experiment: MLflow 3's UI opens a `custom_model_development` experiment on its training runs
# (without the tag it infers a kind and may open on its GenAI overview).
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
ROLE_LABELS = {DENSE_ROLE: "dense parent", TICKET_ROLE: "ticket", LEVEL_ROLE: "IMP level",  # for messages
               STABILITY_ROLE: "stability analysis", COPY_ROLE: "stability copy"}
FINISHED = "FINISHED"

# A dense parent.
KEEP_EPOCHS = "lth.keep_epochs"  # the epochs whose weights it kept, space-separated
DATA_ORDER = "lth.data_order"  # lth.data.splits.DATA_ORDER_VERSION of the order it was trained under
REPLICAS = "lth.replicas"  # devices it trained on (train.devices is not hashed; per-replica BN is)
DENSE_AT_CHANCE = "lth.dense_at_chance"  # `true`: test accuracy at chance (lth.training.chance): its tickets mean nothing
REPORT_MEASURE = "lth.report_measure"  # final or early_stop: the accuracies its report/ folder was judged on

# Where a sparse run sits in the search (SparseTags).
THRESHOLD, RESET_EPOCH, SCOPE = "lth.threshold", "lth.reset_epoch", "lth.scope"
METHOD, CONTROL, SEED, LEVEL = "lth.method", "lth.control", "lth.seed", "lth.level"

# Verdicts: why a number is not a result.
DIVERGED = "lth.diverged"  # nan, chance, `level N` on an IMP job, `true` on a dense run
DIVERGED_EPOCH = "lth.diverged_epoch"
DIVERGED_LEVEL = "lth.diverged_level"  # on an IMP job: the level that diverged
COLLAPSED = "lth.collapsed_layers"  # layers the mask left with no weight
FLOOR = "lth.floor_layers"  # layers held at the prune.min_density floor

# An IMP job. The level whose files it ends with is found by key, since a reused level
# keeps the `mlflow.parentRunId` of the job that trained it.
LAST_LEVEL, LAST_LEVEL_KEY = "lth.last_level", "lth.last_level_key"
TICKET_RUN = "lth.ticket_run_id"  # on a control's job: the ticket job whose masks it trains
TICKET_DIVERGED = "lth.ticket_diverged_level"  # on a control's job: where its ticket stopped

# An instability analysis (and, prefixed, its analysed run): lth.stability.analysis.
ANALYSED_RUN, DATA_SEED = "lth.analysed_run", "lth.data_seed"  # the run analysed; a copy's SGD noise
STABLE, RESET_CHOICE = "lth.stable", "lth.reset_choice"  # val barrier below stability.threshold; why auto chose k
BARRIER, PATH_ERROR = "barrier", "error"  # on the analysis: the mean test barrier; test error at step = α index
# The same on the validation split, which decides (auto's k, lth.stable); analyses logged before it lack them.
VAL_BARRIER, VAL_PATH_ERROR = "val_barrier", "val_error"

# The job that ran it.
ERROR = "lth.error"  # the exception that ended an attempt (dropped when the run resumes)
DEVICE_KIND, CLUSTER = "lth.device_kind", "lth.cluster"
SLURM_JOB, SLURM_RESTARTS = "lth.slurm_job_id", "lth.slurm_restarts"
PROCESSES = "lth.processes"  # processes that trained the run together (SLURM tasks, Spark barrier tasks); 1: one

# Metrics. Per epoch (step = epochs completed): Keras' logs (loss, accuracy, val_loss, val_accuracy)
# and the fit loop's own LEARNING_RATE, OPTIMIZER_ITERATIONS and LOSS_SCALE; the rest once at the end.
# The fit loop knows no tracker, so lth.training.fitting spells those three itself; tests/integration/test_schema.py
# holds them equal to these.
TEST_ACCURACY, TEST_LOSS, VAL_ACCURACY = "test_accuracy", "test_loss", "val_accuracy"
DIVERGED_TEST_ACCURACY = "diverged_test_accuracy"  # a diverged run's accuracy: a status, not a result
DENSE_TEST_ACCURACY = "dense_test_accuracy"
EPOCHS_TRAINED, DEVICE_EPOCHS, TRAIN_SECONDS = "epochs_trained", "device_epochs", "train_seconds"
OPTIMIZER_ITERATIONS, LOSS_SCALE, LEARNING_RATE = "optimizer_iterations", "loss_scale", "learning_rate"
# weights_remaining: the kept fraction of ALL prunable weights of the network (every Conv2D, DepthwiseConv2D
# and Dense kernel, as structure=none with no prune.ignore sees them), whatever the mask covers, so runs of every
# structure share one axis; sparsity = 1 - weights_remaining. WEIGHTS_REMAINING_OF_MASKED_LAYERS: the kept
# fraction of the layers the mask covers (prune.structure's, less prune.ignore), what the threshold removes from.
# Runs logged before it exist logged that share as weights_remaining (see `on_common_base`).
SPARSITY, WEIGHTS_REMAINING, DEAD_CHANNELS = "sparsity", "weights_remaining", "dead_channels"
WEIGHTS_REMAINING_OF_MASKED_LAYERS = "weights_remaining_of_masked_layers"
LAYER_SPARSITY_PREFIX = "sparsity."  # + layer name
LEVEL_WEIGHTS_REMAINING, LEVEL_TEST_ACCURACY = "level_weights_remaining", "level_test_accuracy"  # IMP job, step=level
EARLY_STOP_EPOCH, EARLY_STOP_VAL_LOSS = "early_stop_epoch", "early_stop_val_loss"
EARLY_STOP_TEST_LOSS, EARLY_STOP_TEST_ACCURACY = "early_stop_test_loss", "early_stop_test_accuracy"

# Artifacts.
MASK, SPARSITY_REPORT, DENSITIES = "mask.npz", "sparsity.json", "densities.csv"
START_WEIGHTS, FINAL_WEIGHTS = "weights/start.npz", "weights/final.npz"
START_OPTIMIZER = "weights/start_optimizer.npz"  # a stability copy's optimizer variables at its start (slots, step)
ERROR_TEXT, HYDRA_FOLDER = "error.txt", "hydra"
REPORT_FOLDER = "report"  # on every dense parent of a family: the lottery-ticket report (lth.report)
EXPORT_FOLDER = "export"  # on an exported ticket: its compacted and TFLite forms and their report (lth.export)

# A winning ticket (lth.report.model_registry): its run links the MLflow model the report logged of it.
WINNER_MODEL = "lth.winner_model"  # models:/<model id>, logged once
REGISTERED_AS = "lth.registered_model"  # <registered name>/<version>, with report.register=true


def checkpoint(epoch: int) -> str:
    """The artifact of a dense parent's weights after `epoch` epochs (0 = its initialisation)."""
    return f"checkpoints/epoch_{epoch:03d}.npz"


def kind(method: str, control: str) -> str:
    """ticket, imp, or the control's name: what a sparse run is."""
    if control != "none":
        return control
    return "imp" if method == "imp" else "ticket"


@dataclass(frozen=True)
class SparseTags:
    """Where a sparse run sits in the search: written on every ticket, control, IMP job and level."""

    threshold: float  # the exact fraction removed (IMP: nominal 1-(1-rate)^l unless layer rates make it exact)
    reset_epoch: int
    scope: str
    method: str
    control: str
    seed: int
    level: int | None = None  # IMP level; None for a one-shot run or an IMP job

    def tags(self) -> dict[str, str]:
        """The tags of this run."""
        tags = {THRESHOLD: f"{self.threshold}", RESET_EPOCH: str(self.reset_epoch), SCOPE: self.scope,
                METHOD: self.method, CONTROL: self.control, SEED: str(self.seed)}
        return tags if self.level is None else {**tags, LEVEL: str(self.level)}

    @classmethod
    def read(cls, tags: Mapping[str, str]) -> SparseTags:
        """Read them back (runs logged before `lth.scope` were global)."""
        return cls(float(tags[THRESHOLD]), int(tags[RESET_EPOCH]), tags.get(SCOPE, "global"),
                   tags.get(METHOD, "magnitude"), tags.get(CONTROL, "none"), int(tags.get(SEED, 0)),
                   int(tags[LEVEL]) if LEVEL in tags else None)

    @property
    def kind(self) -> str:
        """ticket, imp, or the control's name."""
        return kind(self.method, self.control)


def lineage_tags(parent_run_id: str, dense_hash: str, dense_run_id: str, family: str, cell: str) -> dict[str, str]:
    """Tags that tie a sparse run to its parent and dense run, and let the report group it."""
    return {PARENT: parent_run_id, DENSE_HASH: dense_hash, DENSE_RUN: dense_run_id, FAMILY: family, CELL: cell}


def dense_tags(dense_hash: str, family: str, seed: int, data_order: str) -> dict[str, str]:
    """Tags of a new dense parent run."""
    return {DENSE_HASH: dense_hash, FAMILY: family, SEED: str(seed), DATA_ORDER: data_order}


def kept_epochs(tags: Mapping[str, str]) -> frozenset[int]:
    """The epochs a dense parent kept (tag KEEP_EPOCHS); empty when it never started training."""
    return frozenset(int(epoch) for epoch in tags.get(KEEP_EPOCHS, "").split())


def keep_epochs_tag(epochs: frozenset[int]) -> dict[str, str]:
    """The KEEP_EPOCHS tag for `epochs`, read back by `kept_epochs`."""
    return {KEEP_EPOCHS: " ".join(str(epoch) for epoch in sorted(epochs))}


def divergence_tags(verdict: str, epoch: int) -> dict[str, str]:
    """Tags of a sparse run that diverged (verdict nan or chance) at `epoch`."""
    return {DIVERGED: verdict, DIVERGED_EPOCH: str(epoch)}


def divergence(tags: Mapping[str, str]) -> str | None:
    """A run's divergence verdict, or None when it did not diverge."""
    return tags.get(DIVERGED) or None


def outcome_metrics(test_accuracy: float, test_loss: float, epochs_trained: int, device_epochs: int,
                    seconds: float, early_stop: EarlyStop | None, diverged: bool = False) -> dict[str, float]:
    """The end-of-run metrics of a trained run; a diverged one logs its accuracy under another name."""
    metrics = {DIVERGED_TEST_ACCURACY if diverged else TEST_ACCURACY: test_accuracy, TEST_LOSS: test_loss,
               EPOCHS_TRAINED: epochs_trained, DEVICE_EPOCHS: device_epochs, TRAIN_SECONDS: seconds}
    return {**metrics, **(early_stop_metrics(early_stop) if early_stop is not None and not diverged else {})}


def early_stop_metrics(point: EarlyStop) -> dict[str, float]:
    """The metrics of the epoch of minimum val_loss (lth.training.early_stop)."""
    return {EARLY_STOP_EPOCH: float(point.epoch), EARLY_STOP_VAL_LOSS: point.val_loss,
            EARLY_STOP_TEST_LOSS: point.test_loss, EARLY_STOP_TEST_ACCURACY: point.test_accuracy}


@dataclass(frozen=True)
class Outcome:
    """The end-of-run metrics the report reads; None where a run lacks one (diverged, or logged before it)."""

    test_accuracy: float | None
    val_accuracy: float | None
    weights_remaining: float | None
    dead_channels: float | None
    early_stop_epoch: int | None
    early_stop_test_accuracy: float | None
    weights_remaining_of_masked_layers: float | None = None  # None: logged before the common base

    @classmethod
    def read(cls, metrics: Mapping[str, float]) -> Outcome:
        """Read a run's metrics (a diverged run has no test_accuracy)."""
        epoch = metrics.get(EARLY_STOP_EPOCH)
        return cls(metrics.get(TEST_ACCURACY), metrics.get(VAL_ACCURACY), metrics.get(WEIGHTS_REMAINING),
                   metrics.get(DEAD_CHANNELS),
                   None if epoch is None else int(epoch), metrics.get(EARLY_STOP_TEST_ACCURACY),
                   metrics.get(WEIGHTS_REMAINING_OF_MASKED_LAYERS))


# Structures whose masks cover every prunable layer but prune.ignore's (lth.pruning.structure.layout).
WHOLE_NETWORK_STRUCTURES = ("none", "channel")


def on_common_base(metrics: Mapping[str, float], params: Mapping[str, str]) -> bool:
    """Whether a sparse run's `weights_remaining` is a fraction of all prunable weights (the common base).

    Runs that log WEIGHTS_REMAINING_OF_MASKED_LAYERS always are. A run logged before it is when its
    mask covered every prunable layer: a structure of WHOLE_NETWORK_STRUCTURES (absent: before
    `prune.structure`, i.e. none) and an empty `prune.ignore`. An xnnpack_1x1 run, or one with an
    ignore list, logged the share of its masked layers, which the report cannot rebase without the network.

    Args:
        metrics: The run's metrics.
        params: Its `prune.*` params (an IMP level's come from its job's run).
    """
    if WEIGHTS_REMAINING_OF_MASKED_LAYERS in metrics:
        return True
    return (params.get("prune.structure", "none") in WHOLE_NETWORK_STRUCTURES
            and params.get("prune.ignore", "[]") in ("[]", "", "None", "null"))


def base_metrics(report: Mapping[str, object]) -> dict[str, float]:
    """The sparsity a stage reports of a mask (lth.pruning.masks.sparsity_report), on both bases."""
    return {SPARSITY: float(report["sparsity"]), WEIGHTS_REMAINING: float(report["weights_remaining"]),
            WEIGHTS_REMAINING_OF_MASKED_LAYERS: float(report["weights_remaining_of_masked_layers"])}


def sparsity_metrics(report: Mapping[str, object]) -> dict[str, float]:
    """The metrics of a mask's sparsity report (lth.pruning.masks.sparsity_report), per layer too."""
    metrics = {**base_metrics(report), DEAD_CHANNELS: float(report["dead_channels"])}
    layers = report["layers"]
    assert isinstance(layers, list)
    return {**metrics, **{f"{LAYER_SPARSITY_PREFIX}{layer['layer']}": float(layer["sparsity"]) for layer in layers}}


def collapse_tags(collapsed: list[str], floor: list[str]) -> dict[str, str]:
    """Tags naming the layers a mask emptied and those it holds at the floor (none: no tag)."""
    return {**({COLLAPSED: ",".join(collapsed)} if collapsed else {}), **({FLOOR: ",".join(floor)} if floor else {})}


def collapse_lists(tags: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(emptied layers, floor layers) as `collapse_tags` wrote them."""
    return ([name for name in tags.get(COLLAPSED, "").split(",") if name],
            [name for name in tags.get(FLOOR, "").split(",") if name])
