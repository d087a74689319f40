"""Entry point: `python -m lth.train [-m] prune.threshold=… reset.epoch=…`.

Each Hydra job is one cell of the search; see lth.stages.cell_search for what it does.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def sqlite_locked(uri: str) -> str:
    """What to do when the SQLite store stayed locked past MLflow's 20 s busy timeout."""
    return (f"lth: error: the SQLite store {uri} stayed locked by other writers (database is locked); "
            "for many jobs at once log to an MLflow server instead: tracking=server (README: Tracking on a cluster)")


def quote_spark_master(argv: list[str]) -> list[str]:
    """`spark.master=local-cluster[2,1,2048]` as Hydra can parse it.

    Hydra's override grammar reads `[2,1,2048]` as a list and rejects the value, and the shell
    has already removed the quotes of `spark.master='local-cluster[…]'`; a master is always
    one string, so it is quoted here.
    """
    quoted = []
    for argument in argv:
        key, equals, value = argument.partition("=")
        if key.lstrip("+") == "spark.master" and equals and value[:1] not in ("'", '"'):
            argument = f"{key}='{value}'"
        quoted.append(argument)
    return quoted


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> dict[str, object]:
    """Run one cell and write its result.json next to the job's Hydra outputs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner out of job logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # checkpoints are single small files
    # Keras warns on every fit that a tf.data input is not reshuffled by it; ours shuffles itself.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    from lth.validation.validate import ConfigError

    try:
        from lth.training.devices import enter

        group = enter(str(cfg.train.backend))  # before anything imports Keras
        from lth.stages.cell_search import run_cell  # imported here: the submitting process never needs TensorFlow

        result = run_cell(cfg).to_dict()
    except ConfigError as error:
        raise SystemExit(f"lth: error: {error}") from None  # one line, no traceback, before any training
    except Exception as error:
        if "database is locked" in str(error) and str(cfg.tracking.uri).startswith("sqlite"):
            raise SystemExit(sqlite_locked(str(cfg.tracking.uri))) from error
        raise
    if group.leader:  # every process of a run returns process 0's result; one of them writes it
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        (output_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.argv = quote_spark_master(sys.argv)
    main()
