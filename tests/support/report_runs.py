"""Dense parents and tickets written straight into a real MLflow store, tagged as lth tags them.

For report and frontier tests that need runs to read but no training. Every tag and metric
name comes from lth.tracking.schema, so these runs read back as the report reads real ones.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow.tracking import MlflowClient

from lth.tracking import schema


def _finish(client: MlflowClient, run_id: str, params: Mapping[str, object], val_by_epoch: Mapping[int, float],
            metrics: Mapping[str, float]) -> str:
    for key, value in params.items():
        client.log_param(run_id, key, str(value))
    for epoch, value in sorted(val_by_epoch.items()):  # per epoch, as the fit loop logs it (step = epochs done)
        client.log_metric(run_id, schema.VAL_ACCURACY, value, step=epoch)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, schema.FINISHED)
    return run_id


def _early_stop(early_stop: tuple[int, float] | None) -> dict[str, float]:
    """(epoch, test accuracy there) as the early-stop metrics; none when not given."""
    if early_stop is None:
        return {}
    return {schema.EARLY_STOP_EPOCH: float(early_stop[0]), schema.EARLY_STOP_TEST_ACCURACY: early_stop[1]}


def dense_run(client: MlflowClient, experiment_id: str, family: str, seed: int, data_seed: int | None, test: float,
              val_by_epoch: Mapping[int, float], *, num_classes: int = 10,
              early_stop: tuple[int, float] | None = None) -> str:
    """A FINISHED dense parent; its final val_accuracy is that of its last epoch in `val_by_epoch`."""
    run = client.create_run(experiment_id, tags={
        schema.ROLE: schema.DENSE_ROLE, schema.FAMILY: family, schema.SEED: str(seed),
        schema.DENSE_HASH: f"{family}-{seed}-{data_seed}", schema.RUN_NAME: f"dense seed={seed}"})
    params = {"data.name": "digits", "data.val_fraction": 0.1, "data.num_classes": num_classes,
              "train.seed": seed, "train.data_seed": data_seed}
    return _finish(client, run.info.run_id, params, val_by_epoch,
                   {schema.TEST_ACCURACY: test, **_early_stop(early_stop)})


def ticket_run(client: MlflowClient, experiment_id: str, family: str, cell: str, dense_run_id: str, seed: int,
               data_seed: int | None, threshold: float, test: float, val_by_epoch: Mapping[int, float], *,
               reset_epoch: int = 1, early_stop: tuple[int, float] | None = None) -> str:
    """A FINISHED one-shot ticket of `dense_run_id`, with a sparsity.json of two layers."""
    where = schema.SparseTags(threshold, reset_epoch, "global", "magnitude", "none", seed)
    tags = {schema.ROLE: schema.TICKET_ROLE, **where.tags(),
            **schema.lineage_tags(dense_run_id, f"{family}-{seed}-{data_seed}", dense_run_id, family, cell)}
    run = client.create_run(experiment_id, tags=tags)
    client.log_dict(run.info.run_id, {"sparsity": threshold, "weights_remaining": 1 - threshold, "layers": [
        {"layer": "hidden", "kept": 10, "density": 1 - threshold, "sparsity": threshold},
        {"layer": "predictions", "kept": 10, "density": 1.0, "sparsity": 0.0}]}, schema.SPARSITY_REPORT)
    params = {"prune.method": "magnitude", "prune.threshold": threshold, "prune.scope": "global",
              "prune.control": "none", "reset.epoch": reset_epoch, "train.seed": seed, "train.data_seed": data_seed}
    metrics = {schema.TEST_ACCURACY: test, schema.WEIGHTS_REMAINING: 1 - threshold, schema.DEAD_CHANNELS: 0.0,
               **_early_stop(early_stop)}
    return _finish(client, run.info.run_id, params, val_by_epoch, metrics)
