"""lth's Hydra launcher plugin (SLURM: dense parents first, then one array of tickets)."""
