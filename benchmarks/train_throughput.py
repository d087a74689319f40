"""Training throughput through lth's own path: dense vs masked, images/s, step ms, peak memory.

The network is lth's `MaskedNetwork` (MobileNetV2, masks as constraints, lth's optimizer
and schedule), the input is lth's `load_data` on `data=synthetic` (uint8 images,
normalised on the device), and the loop is Keras `fit`. The first epoch compiles and is
not timed; each later epoch is timed and the best is reported.

    # GPU, the issue's setting (JAX backend: needs keras, jax, omegaconf; no TensorFlow)
    python benchmarks/train_throughput.py --backend jax --batch 256 512 --precision mixed_bfloat16
    # CPU: the masked / unmasked step-time ratio for the tiny and the full model
    python benchmarks/train_throughput.py --cpu-ratio

With `--peer FILE` (the JSON lines of the PyTorch peer script, run on the same card),
it also prints lth's masked images/s over the peer's dense images/s at each batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

MODELS = {  # the issue's full model and the tests' tiny one
    "full": {"name": "mobilenet_v2", "alpha": 1.0, "input_size": 224, "num_classes": 1000, "bn_momentum": 0.999},
    "tiny": {"name": "mobilenet_v2", "alpha": 0.35, "input_size": 32, "num_classes": 10, "bn_momentum": 0.9},
}


def _config(model: str, batch: int, steps: int, precision: str, steps_per_execution: int) -> object:
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "model": MODELS[model],
        "train": {"seed": 0, "epochs": 100, "batch_size": batch, "optimizer": "sgd", "learning_rate": 0.1,
                  "momentum": 0.9, "weight_decay": 4e-5, "lr_schedule": "constant", "warmup_epochs": 0,
                  "step_milestones": [], "step_gamma": 0.1, "devices": "auto", "precision": precision,
                  "sync_bn": False, "lr_scaling": "none", "lr_reference_batch": 256,
                  "steps_per_execution": steps_per_execution},
        "data": {"name": "synthetic", "num_classes": MODELS[model]["num_classes"],
                 "image_size": MODELS[model]["input_size"], "train_size": batch * steps, "val_size": batch,
                 "test_size": batch, "split_seed": 0},
    })


def _peak_memory_gb() -> float | None:
    import keras

    try:
        if keras.backend.backend() == "jax":
            import jax

            stats = jax.local_devices()[0].memory_stats() or {}
            return round(stats.get("peak_bytes_in_use", 0) / 2**30, 2) or None
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30, 2)
    except Exception:  # memory statistics are best effort (CPU devices have none)
        return None
    return None


class EpochTimer:
    """Wall time of each epoch; Keras syncs with the device when it reads the epoch's logs."""

    def __init__(self) -> None:
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch: int, logs: dict | None = None) -> None:  # noqa: N805
                self.started = time.perf_counter()

            def on_epoch_end(inner, epoch: int, logs: dict | None = None) -> None:  # noqa: N805
                self.seconds.append(time.perf_counter() - self.started)

        self.callback, self.seconds, self.started = Callback(), [], 0.0


def measure(model: str, batch: int, steps: int, epochs: int, precision: str, sparsity_levels: list[float],
            steps_per_execution: int) -> list[dict]:
    """Time dense and masked training of one compiled network at one batch size."""
    import keras

    from lth.config.cell import DataConfig, ModelConfig, TrainConfig
    from lth.config.pieces import piece
    from lth.data import load_data
    from lth.pruning.scopes import prune_masks
    from lth.training.models import kernel_path
    from lth.training.network import MaskedNetwork

    cfg = _config(model, batch, steps, precision, steps_per_execution)
    data = load_data(piece(DataConfig, cfg.data, "data"), batch, 0)
    network = MaskedNetwork(piece(ModelConfig, cfg.model, "model"), piece(TrainConfig, cfg.train, "train"),
                            data.steps_per_epoch)
    names = list(network.mask_variables)
    results = []
    for sparsity in sparsity_levels:
        masks = None
        if sparsity > 0:  # layer-wise magnitude masks of the initial weights: every layer at `sparsity`
            masks = prune_masks({n: network.initial_weights[kernel_path(n)] for n in names}, sparsity, "layer")
        network.load(network.initial_weights, masks, start_epoch=0)
        timer = EpochTimer()
        network.model.fit(data.train, epochs=1 + epochs, verbose=0, callbacks=[timer.callback])
        best = min(timer.seconds[1:])
        results.append({
            "impl": f"lth_keras_{keras.backend.backend()}", "model": model, "batch": batch, "sparsity": sparsity,
            "precision": precision, "steps_per_execution": steps_per_execution,
            "img_per_s": round(batch * steps / best, 1), "step_ms": round(1000 * best / steps, 2),
            "compile_s": round(timer.seconds[0], 1), "peak_mem_gb": _peak_memory_gb(),
            "devices": network.replicas, "device": keras.distribution.list_devices()[0],
        })
        print(json.dumps(results[-1]), flush=True)
    return results


def _ratios(results: list[dict], peer: list[dict]) -> None:
    def best(candidates: list[dict]) -> dict | None:  # repeated variants: the fastest of each
        return min(candidates, key=lambda r: r["step_ms"]) if candidates else None

    for batch in sorted({r["batch"] for r in results}):
        dense = best([r for r in results if r["batch"] == batch and r["sparsity"] == 0])
        for masked in filter(None, [best([r for r in results if r["batch"] == batch and r["sparsity"] > 0])]):
            if dense:
                ratio = masked["step_ms"] / dense["step_ms"]
                print(f"{masked['model']} model, batch {batch}: masked / dense step time = {ratio:.3f} "
                      f"(mask overhead {100 * (ratio - 1):+.1f}%)")
            twin = next((p for p in peer if p["batch"] == batch and p["sparsity"] == 0), None)
            if twin:
                print(f"batch {batch}: lth masked {masked['img_per_s']:.0f} img/s / {twin['impl']} dense "
                      f"{twin['img_per_s']:.0f} img/s = {masked['img_per_s'] / twin['img_per_s']:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["tensorflow", "jax"], default="jax")
    parser.add_argument("--model", choices=sorted(MODELS), default="full")
    parser.add_argument("--batch", type=int, nargs="+", default=[256])
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--sparsity", type=float, default=0.8, help="masked variant's sparsity (dense is also run)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after the compiling one (best is kept)")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--peer", type=Path, help="JSON lines of the PyTorch peer, for the ratio")
    parser.add_argument("--cpu-ratio", action="store_true",
                        help="CPU: masked/unmasked step time for the tiny and the full model (float32)")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow" if args.cpu_ratio else args.backend)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results: list[dict] = []
    if args.cpu_ratio:  # small batches (the full model trains at ~15 img/s on 2 cores); alternated, best of each
        alternating = [0.0, args.sparsity] * 3  # a shared 2-core machine drifts: interleave, keep the best of each
        results += measure("tiny", 64, 20, 3, "float32", alternating, 1)
        results += measure("full", 16, 8, 3, "float32", alternating, 1)
    else:
        for batch in args.batch:
            results += measure(args.model, batch, args.steps, args.epochs, args.precision, [0.0, args.sparsity],
                               args.steps_per_execution)
    peer = [json.loads(line) for line in args.peer.read_text().splitlines() if line.startswith("{")] if args.peer else []
    for model in sorted({r["model"] for r in results}):
        _ratios([r for r in results if r["model"] == model], peer)


if __name__ == "__main__":
    main()
