"""lth's Hydra sweeper plugin: the frontier sweep (`hydra/sweeper=lth_frontier`, lth.frontier)."""
