"""lth's Hydra launcher plugins: SLURM (dense parents first, then one array of tickets) and Spark
(each job one run over barrier tasks)."""

from __future__ import annotations

from omegaconf import DictConfig, open_dict


def numbered(config: DictConfig, number: int) -> DictConfig:
    """The sweep's config as job `number`: what the submitting side's callbacks need to hear of that job
    (the job's own config lives where it ran)."""
    cfg = config.copy()
    with open_dict(cfg):
        cfg.hydra.job.num = number
    return cfg
