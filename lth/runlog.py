"""Logging helpers shared by every stage: weights, masks, the Hydra config, device cost."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from lth import tracking
from lth.identity import flatten
from lth.masks import save_masks, sparsity_report
from lth.models import load_weights, save_weights


def device_count() -> tuple[str, int]:
    """(kind, count) of the accelerators this job sees; CPU counts as one."""
    from lth.devices import device_kind_and_count

    return device_kind_and_count()


def log_hydra_config() -> None:
    """Attach the job's `.hydra/` folder (config, overrides) when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        folder = Path(HydraConfig.get().runtime.output_dir) / ".hydra"
        if folder.is_dir():
            mlflow.log_artifacts(str(folder), "hydra")


def log_config(cfg: DictConfig, groups: Iterable[str]) -> None:
    """Log the given config groups as flattened params (only those the run lacks) and the job context as tags.

    A resumed run may run under another cluster or tracking spelling; those go to tags,
    which may change, while params may not.
    """
    run = mlflow.active_run()
    existing = MlflowClient().get_run(run.info.run_id).data.params if run is not None else {}
    params = flatten({group: OmegaConf.to_container(cfg[group], resolve=True) for group in groups})
    mlflow.log_params({key: value for key, value in params.items() if key not in existing})
    mlflow.set_tags({"lth.device_kind": device_count()[0], "lth.cluster": str(cfg.cluster.name)})
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
        table = Path(scratch) / "densities.csv"  # per-layer density table, network order, for a spreadsheet
        table.write_text("layer,weights,kept,density,channels,dead_channels\n" + "".join(
            f"{layer['layer']},{layer['weights']},{layer['kept']},{layer['density']:.6f},{layer['channels']},"
            f"{layer['dead_channels']}\n" for layer in report["layers"]))
        mask_path, report_path = save_masks(masks, Path(scratch))
        report_path.write_text(json.dumps(report, indent=2))  # the report with the depthwise layers as given
        for path in (mask_path, report_path, table):
            mlflow.log_artifact(str(path))
    mlflow.log_metrics({"sparsity": report["sparsity"], "weights_remaining": report["weights_remaining"],
                        "dead_channels": report["dead_channels"]})
    mlflow.log_metrics({f"sparsity.{layer['layer']}": layer["sparsity"] for layer in report["layers"]})
    return report


def run_weights(run_id: str, artifact: str) -> dict[str, np.ndarray]:
    """Read a weight snapshot artifact of any run."""
    return tracking.fetch(run_id, artifact, load_weights)
