"""The `holdout` split: a fixed number of training images of every class, kept out of the train shards.

ImageNet's labelled `val` is the only test set there is, so choosing winners by their
accuracy on it would make the final test a selection criterion. A holdout carved out of
`train` gives the runs a validation split of their own (`data.val_split=holdout`), and
`val` stays the untouched test (`data.test_split=val`).

Which images are held out is a function of their keys and the shuffle seed only: within
each class, the `holdout_per_class` images whose seeded hash is smallest. Like the shard
assignment, it does not depend on the order the source lists its files in, nor on Spark's
partitioning (the plan is made on the driver before any task runs), so a rerun holds out
the same images and writes the same shards. An image added to a class later changes that
class's holdout by at most one image.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from lth.config.vocabulary import ConfigError
from lth.ingest.inventory import SourceRecord

HOLDOUT = "holdout"  # the split's name in shard file names, the manifest and `data.val_split`


def _rank(seed: int, key: str) -> int:
    """A stable pseudo-random rank per (seed, key), salted apart from the shard hash.

    A separate salt keeps the choice of holdout images uncorrelated with the shard an image
    would have gone to, so the held-out images do not all come out of a few train shards.
    """
    return int.from_bytes(hashlib.sha256(f"{HOLDOUT}:{seed}:{key}".encode()).digest()[:8], "big")


def held_out_keys(records: list[SourceRecord], per_class: int, seed: int) -> frozenset[str]:
    """Keys of the training records that go to the holdout split instead of train.

    Counts are of listed inputs: one that proves undecodable while its shard is written is
    rejected like any other (manifest `rejected`, split `holdout`) and leaves its class one short.

    Args:
        records: The checked records of every split (only `train` ones are held out).
        per_class: Images held out of every class; 0 holds out none.
        seed: The ingest's `shuffle_seed`.

    Raises:
        ConfigError: If `per_class` is negative, there is no training image to hold out from, or it
            would leave some class no training image; the message names the smallest class and the
            largest value that works.
    """
    if per_class < 0:
        raise ConfigError(f"holdout_per_class must be >= 0 (0: no holdout), got {per_class}")
    if per_class == 0:
        return frozenset()
    classes: dict[str, list[str]] = defaultdict(list)
    for record in records:
        if record.split == "train":
            classes[record.wnid].append(record.key)
    if not classes:  # `checked` refuses such a source first; a direct caller gets the same one line, not min()'s
        raise ConfigError(f"holdout_per_class={per_class} has no training images to hold out from: the records "
                          f"list {len(records)} inputs, none in split train")
    smallest = min(sorted(classes), key=lambda wnid: len(classes[wnid]))
    if len(classes[smallest]) <= per_class:
        # Failing beats an uneven holdout: a class left with no training image cannot be learnt, and
        # fewer held-out images for some classes would weight validation accuracy towards the others.
        raise ConfigError(f"holdout_per_class={per_class} leaves class {smallest} ({len(classes[smallest])} training "
                          f"images listed) with none to train on: set holdout_per_class to at most "
                          f"{len(classes[smallest]) - 1}")
    return frozenset(key for keys in classes.values()
                     for key in sorted(keys, key=lambda key: (_rank(seed, key), key))[:per_class])
