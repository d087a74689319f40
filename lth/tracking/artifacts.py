"""Logging helpers shared by every stage: weights, masks, the Hydra config, device cost."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from lth.pruning.masks import save_masks, sparsity_report
from lth.tracking import client, schema
from lth.tracking.identity import flatten
from lth.training.models import load_weights, save_weights


def device_count() -> tuple[str, int]:
    """(kind, count) of the accelerators this job sees; CPU counts as one."""
    from lth.training.devices import device_kind_and_count

    return device_kind_and_count()


def log_hydra_config() -> None:
    """Attach the job's `.hydra/` folder (config, overrides) when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        folder = Path(HydraConfig.get().runtime.output_dir) / ".hydra"
        if folder.is_dir():
            mlflow.log_artifacts(str(folder), schema.HYDRA_FOLDER)


def log_config(groups: Mapping[str, Any], names: Iterable[str], cluster: str) -> None:
    """Log config groups as flattened params (only those the run lacks) and the job context as tags.

    A resumed run may run under another cluster or tracking spelling; those go to tags,
    which may change, while params may not.

    Args:
        groups: The resolved config groups (`lth.cell.Cell.groups`).
        names: The groups to log, e.g. `lth.tracking.identity.DENSE_KEYS`.
        cluster: `cluster.name`, tagged.
    """
    run = mlflow.active_run()
    existing = MlflowClient().get_run(run.info.run_id).data.params if run is not None else {}
    params = flatten({name: groups[name] for name in names})
    mlflow.log_params({key: value for key, value in params.items() if key not in existing})
    mlflow.set_tags({schema.DEVICE_KIND: device_count()[0], schema.CLUSTER: cluster})
    log_hydra_config()


def log_weights(weights: Mapping[str, np.ndarray], artifact: str) -> None:
    """Log a weight snapshot as the `.npz` artifact `artifact` of the active run."""
    with tempfile.TemporaryDirectory(prefix="lth-") as scratch:
        path = save_weights(weights, Path(scratch) / Path(artifact).name)
        mlflow.log_artifact(str(path), str(Path(artifact).parent) if "/" in artifact else None)


def log_masks(masks: Mapping[str, np.ndarray], depthwise_layers: Collection[str] | None = None) -> dict[str, object]:
    """Log `mask.npz`, `sparsity.json`, `densities.csv` and the sparsity metrics; returns the sparsity report.

    Args:
        masks: Kernel masks by layer name, in network order.
        depthwise_layers: The DepthwiseConv2D layers among them, whose channels are counted per
            (input, multiplier) pair; None infers them from their names (see `sparsity_report`).
    """
    report = sparsity_report(masks, depthwise_layers)
    with tempfile.TemporaryDirectory(prefix="lth-") as scratch:
        table = Path(scratch) / schema.DENSITIES  # per-layer density table, network order, for a spreadsheet
        table.write_text("layer,weights,kept,density,channels,dead_channels\n" + "".join(
            f"{layer['layer']},{layer['weights']},{layer['kept']},{layer['density']:.6f},{layer['channels']},"
            f"{layer['dead_channels']}\n" for layer in report["layers"]))
        mask_path, report_path = save_masks(masks, Path(scratch), schema.MASK, schema.SPARSITY_REPORT)
        report_path.write_text(json.dumps(report, indent=2))  # the report with the depthwise layers as given
        for path in (mask_path, report_path, table):
            mlflow.log_artifact(str(path))
    mlflow.log_metrics(schema.sparsity_metrics(report))
    return report


def run_weights(run_id: str, artifact: str) -> dict[str, np.ndarray]:
    """Read a weight snapshot artifact of any run."""
    return client.fetch(run_id, artifact, load_weights)
