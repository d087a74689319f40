"""What the tests share, in one place.

- `paths`: the checkout's root and its `conf/` tree.
- `jobs`: running `python -m lth.train` as a user would (to the end, in the background, killed at a line).
- `store`: reading the runs and artifacts a job left in a folder's default MLflow store.
- `pieces`: typed config pieces from hand-written groups.
- `small_imagenet`: a small ImageNet (tree, tars, URL lists) with real-world quirks and bad inputs.
- `mlflow_server`: a real `mlflow server` on 127.0.0.1, on a port no other process holds.
- `flaky_proxy`: a proxy that drops chosen exchanges between MLflow and its server.
- `slurm`: the command line, MLflow reads and accounting of the SLURM tests.
- `halting.py` and `workers/`: scripts the tests start as processes of their own.
"""
