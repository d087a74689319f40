"""Input pipelines: the array datasets and the TFRecord shards, as `DataSplits` for either backend.

It logs nothing and knows no training loop: the loop tells it which epoch begins
(`DataSplits.begin_epoch`) and takes its batches.
"""

from lth.data.load import load_data

__all__ = ["load_data"]
