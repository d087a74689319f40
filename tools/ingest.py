"""Raw images -> TFRecord shards with Spark: `python tools/ingest.py source=tree source.root=/data/imagenet`.

A thin Hydra wrapper around `lth.ingest.run_ingest`; the config is conf/ingest.yaml. Add
`hydra/launcher=submitit_slurm` (and e.g. `hydra.launcher.cpus_per_task=32`) to run it as a SLURM job.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="../conf", config_name="ingest", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    """Ingest the configured source; returns the manifest (Hydra's job return value)."""
    from lth.config.vocabulary import ConfigError
    from lth.ingest import run_ingest

    try:
        return run_ingest(cfg)
    except ConfigError as error:  # no Java, a missing folder, a holdout emptying a class: one line, no traceback
        raise SystemExit(f"lth: error: {error}") from None


if __name__ == "__main__":
    main()
