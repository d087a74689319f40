"""Raw images (ImageNet tree, official tars, URL lists, any image folder) to TFRecord shards, with Spark.

Entry point: `python tools/ingest.py` (a Hydra app, conf/ingest.yaml); library entry: `run_ingest`.
"""

from lth.ingest.run import run_ingest

__all__ = ["run_ingest"]
