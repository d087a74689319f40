"""The Elephas half of benchmarks/elephas_comparison.py, run by the throwaway venv's interpreter.

    <venv>/bin/python benchmarks/elephas_side.py --out FILE --variant shipped --workers 2 \
        --master 'local-cluster[2,1,2048]' [--start weights/start.npz --mask mask.npz] -- <lth overrides>

The model, data, optimizer and masks are lth's own: the `model`, `data` and `train` groups are
composed from conf/ with the same overrides the lth side gets, the model is
`lth.training.models.build_model`, the arrays `lth.data.arrays.LOADERS`, the optimizer
`lth.training.fitting.build_optimizer` and the masks lth's ticket's `mask.npz` (else
`prune_masks` of the initial kernels). Variants of the mask:

- `shipped`: `attach_masks` (a `MaskConstraint` on each kernel), and `custom_objects` names the class,
  so the workers rebuild the constraint from the model's JSON;
- `unshipped`: the same model without `custom_objects` (what a user who does not know gets);
- `driver`: no constraint; the masked weights are only zeroed on the driver before training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # lth from this checkout, before any installed copy
os.environ["KERAS_BACKEND"] = "tensorflow"  # the backend Elephas supports (it imports tensorflow.keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


class EpochSeconds(keras.callbacks.Callback):
    """Puts each worker epoch's seconds inside `model.fit` into its logs, which Elephas returns as history."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:  # this callback runs before Keras' History, which records these logs
            logs["fit_seconds"] = time.perf_counter() - self.started


def _pieces(overrides: list[str]) -> tuple[Any, Any, Any]:
    """(model, data, train) pieces composed from conf/ exactly as `python -m lth.train OVERRIDES` composes them."""
    from hydra import compose, initialize_config_dir

    from lth.config.cell import DataConfig, ModelConfig, TrainConfig
    from lth.config.pieces import piece

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return (piece(ModelConfig, cfg.model, "model"), piece(DataConfig, cfg.data, "data"),
            piece(TrainConfig, cfg.train, "train"))


def _model(model_cfg: Any, train_cfg: Any, steps: int, variant: str, start: Path | None,
           mask: Path | None, threshold: float) -> tuple[keras.Model, dict[str, np.ndarray], str]:
    """The compiled model with its masks applied as `variant` says; returns it, the masks and their origin."""
    from lth.pruning.masks import attach_masks, load_masks, prunable_layer_names
    from lth.pruning.scopes import prune_masks
    from lth.training.fitting import build_optimizer
    from lth.training.models import build_model, kernel_path, load_weights, restore, snapshot

    model = build_model(model_cfg, train_cfg.seed)
    if start is not None:  # lth's ticket's start: its dense init times its mask (JAX and TF draw other inits)
        restore(model, load_weights(start))
    if mask is not None:
        masks, origin = load_masks(mask), "lth ticket mask.npz"
    else:
        initial = snapshot(model)
        masks = prune_masks({n: initial[kernel_path(n)] for n in prunable_layer_names(model)}, threshold, "layer")
        origin = "prune_masks(initial kernels, layer)"
    if variant == "driver":
        for name, keep in masks.items():
            kernel = model.get_layer(name).kernel
            kernel.assign(np.where(keep, kernel.numpy(), 0.0))
    else:
        attach_masks(model, masks)
    model.compile(optimizer=build_optimizer(train_cfg, steps, start_epoch=0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model, masks, origin


def _warm_up(sc: Any, workers: int) -> float:
    """Start every executor's Python worker and import TensorFlow and Elephas there (not timed as training).

    Barrier mode runs the `workers` tasks at once, so each executor gets one; Spark reuses
    these Python workers (spark.python.worker.reuse, on by default) for Elephas' tasks.
    """
    def load(_: Any) -> Any:
        # Only what Elephas imports: importing lth here would register MaskConstraint with Keras
        # in these reused workers, and the `unshipped` variant would find it without custom_objects.
        import elephas.worker  # noqa: F401  (tensorflow, flask, the legacy tensorflow.python.keras)

        yield os.getpid()

    started = time.perf_counter()
    sc.parallelize(range(workers), workers).barrier().mapPartitions(load).collect()
    return time.perf_counter() - started


def _cause(text: str) -> str:
    """The workers' Python error in a failed Spark job's text, in one line (Keras nests the real cause)."""
    lines = [line.strip() for line in text.splitlines()]
    located = [line[:160] for line in lines if "Could not interpret" in line or "Could not locate" in line]
    errors = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception")) and "py4j" not in line]
    return (located[:1] or errors[-1:] or lines[-1:] or ["?"])[0][:400]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train with Elephas' synchronous SparkModel and measure it."""
    from elephas.spark_model import SparkModel
    from elephas.utils.rdd_utils import to_simple_rdd
    from pyspark.sql import SparkSession

    from lth.data.arrays import LOADERS
    from lth.pruning.masks import MaskConstraint

    model_cfg, data_cfg, train_cfg = _pieces(args.overrides)
    (x_train, y_train), _, (x_test, y_test) = LOADERS[data_cfg.name](data_cfg)
    per_worker = train_cfg.batch_size // args.workers  # Elephas' batch is each worker's; lth's is global
    steps = len(x_train) // train_cfg.batch_size
    model, masks, origin = _model(model_cfg, train_cfg, steps, args.variant, args.start, args.mask, args.threshold)
    result: dict[str, Any] = {
        "impl": f"elephas_{args.variant}", "epochs": train_cfg.epochs, "batch": f"{args.workers}x{per_worker}",
        "train_images": len(x_train), "mask_source": origin, "keras": keras.__version__}
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # lth on the executors too
    spark = (SparkSession.builder.master(args.master).appName(f"elephas-{args.variant}")
             .config("spark.driver.memory", "1g").config("spark.executorEnv.PYTHONPATH", path).getOrCreate())
    sc = spark.sparkContext
    sc.setLogLevel("ERROR")
    try:
        result["warm_up_s"] = round(_warm_up(sc, args.workers), 1)
        custom = {"MaskConstraint": MaskConstraint} if args.variant == "shipped" else None
        spark_model = SparkModel(model, num_workers=args.workers, custom_objects=custom, batch_size=per_worker)
        rdd = to_simple_rdd(sc, x_train, y_train)
        started = time.perf_counter()
        try:
            spark_model.fit(rdd, epochs=train_cfg.epochs, batch_size=per_worker, verbose=0,
                            callbacks=[EpochSeconds()])
        except Exception as error:  # a Py4JJavaError: say what the workers raised, in one line
            print(error, file=sys.stderr)
            result["error"] = _cause(str(error))
            return result
        fit_s = time.perf_counter() - started
    finally:
        spark.stop()
    histories = [h for h in spark_model.training_histories if h]
    worker_s = sum(h["fit_seconds"][0] for h in histories) / args.workers  # the workers run side by side
    trained = model  # Elephas set the averaged weights on this master network
    leaks = {name: int(np.count_nonzero(trained.get_layer(name).kernel.numpy()[~keep])) for name, keep in masks.items()}
    _, accuracy = trained.evaluate(x_test, y_test, batch_size=train_cfg.batch_size, verbose=0)
    images = len(x_train) * train_cfg.epochs
    return {**result, "img_per_s": round(images / fit_s, 1), "train_s": round(fit_s, 2),
            "worker_fit_s": round(worker_s, 2), "worker_img_per_s": round(images / worker_s, 1),
            "test_accuracy": round(float(accuracy), 4), "masked": int(sum((~m).sum() for m in masks.values())),
            "leaks": sum(leaks.values()), "leaks_by_layer": leaks,
            "max_masked_abs": float(max(np.abs(trained.get_layer(n).kernel.numpy()[~k]).max() for n, k in masks.items())),
            "worker_loss_last_epoch": [round(float(h["loss"][-1]), 4) for h in histories[-args.workers:]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where the result's JSON is written")
    parser.add_argument("--variant", choices=["shipped", "unshipped", "driver"], default="shipped")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--master", default="local-cluster[2,1,2048]")
    parser.add_argument("--start", type=Path, help="lth ticket's weights/start.npz (else lth's own TF init)")
    parser.add_argument("--mask", type=Path, help="lth ticket's mask.npz (else prune_masks of the initial kernels)")
    parser.add_argument("--threshold", type=float, default=0.8, help="sparsity when there is no --mask")
    parser.add_argument("overrides", nargs="*", help="lth's Hydra overrides (model=..., train.epochs=...)")
    args = parser.parse_args()
    try:
        result = run(args)
    except Exception as error:  # the harness reports it as this side's row
        traceback.print_exc()
        result = {"impl": f"elephas_{args.variant}", "error": f"{type(error).__name__}: {error}"[:400]}
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
