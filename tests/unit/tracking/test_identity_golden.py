"""Golden identities of every preset and experiment in conf/: pinned before the config is declared anew.

A dense parent, ticket or IMP level is found again by these hashes, so a change to any of them means
every run trained with that preset stops being reused. Datasets are identified by their content
(lth.data.fingerprint), so each preset that reads a folder is pointed at a folder of fixed bytes
written here: a shard manifest, or the files the Fashion-MNIST loader reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from lth.data.arrays import FILES_READ
from lth.tracking.identity import cell_key, dense_hash, family_hash, imp_level_key, ticket_key

READS_A_FOLDER = {"data=digits_shards": "shards", "data=imagenet": "shards", "data=fashion_mnist": "fashion",
                  "experiment=lenet_fashion_imp": "fashion", "experiment=mobilenet_fashion_rewind": "fashion"}
# overrides -> (dense hash, ticket key, cell key, family hash, IMP level 1 key or None)
GOLDEN: list[tuple[tuple[str, ...], tuple[str, str, str, str, str | None]]] = [
    ((), ('a513945e451ac010', 'c5fbe6f68bff2de1', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('model=lenet_300_100',), ('6f5f4984f6a903f2', '6e6578a7ec7a16f9', '08d082aaddf220bf', '65b475f0b87e81c6', None)),
    (('model=mobilenet_v2',), ('e21e818410cf17be', 'b3a7ee1a3ab9b9a6', '34f1e2e86270bf2c', 'b15318a4b5297936', None)),
    (('model=mobilenet_v2_tiny',), ('a513945e451ac010', 'c5fbe6f68bff2de1', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('data=digits',), ('a513945e451ac010', 'c5fbe6f68bff2de1', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('data=digits_shards',), ('687a79f75cbb6f64', '1afa8b9ec5ce1bc4', 'a803c7feb0002112', 'a0bcb58a445dc5b3', None)),
    (('data=fashion_mnist',), ('e62651b3f7d1e815', '47ad4c792311c4e6', '7a50ab86cc096a9b', '05e00e1e9d67fab6', None)),
    (('data=imagenet',), ('a47c0a56b2c39131', 'c6b0429f89b27fb6', '060c9a568756de96', 'c3bf875a91bf972a', None)),
    (('data=synthetic',), ('7f94e5f6152439c9', 'eff83b0f2d773dc3', '92397a6200bde60a', 'c2a926023f55ba3e', None)),
    (('train=imagenet',), ('503e7170c7b190e2', '1f9a7d701d5c66be', 'f5353e0b298c5d8e', '94975ee54ba49f6e', None)),
    (('train=small',), ('a513945e451ac010', 'c5fbe6f68bff2de1', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('experiment=demo',), ('143ca8cf16e501a7', 'd8d486c108275aff', 'cf5b6f621a799e7c', '5692766625b005a2', None)),
    (('experiment=lenet_fashion_imp',),
     ('86a4c15c443beae3', 'ae2814736dbd0cda', 'eecc7dde3be38203', '535dc4f8bd2afbc2', '7367fd9aea30d00b')),
    (('experiment=mobilenet_fashion_rewind',),
     ('d2f02a5fc90cdfec', '386ae433bb698475', '208d3dd73e91f565', '1c58d5e5b7489e20', None)),
    (('experiment=seed_frontier',), ('a513945e451ac010', 'c5fbe6f68bff2de1', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('experiment=seed_grid',), ('a513945e451ac010', 'c5fbe6f68bff2de1', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('prune.method=imp', 'prune.levels=2'),
     ('a513945e451ac010', '417b1255a50c245c', 'ed13e1d7a93408de', 'a1209b15049a3b34', '7c8836029d6a785e')),
    (('prune.control=reinit',), ('a513945e451ac010', 'a6810c51c37f4382', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('prune.control=random_mask', 'prune.control_seed=3'),
     ('a513945e451ac010', '77f5074c55fdb19a', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('prune.structure=channel',), ('a513945e451ac010', 'efd11f67ed04f6ed', 'a75fefcc72c0f66a', 'a1209b15049a3b34', None)),
    (('prune.structure=xnnpack_1x1',),
     ('a513945e451ac010', 'ce1062b3c35e3b1a', '8d60914d1fb39efa', 'a1209b15049a3b34', None)),
    (('prune.scope=layer',), ('a513945e451ac010', '754971f8b34c4b7f', '1323d28e2e72534b', 'a1209b15049a3b34', None)),
    (('prune.min_density=0.01',), ('a513945e451ac010', '662e2d3a14390474', 'ea6a3e92f6945de0', 'a1209b15049a3b34', None)),
    (('train.data_seed=3',), ('532b7beb4a5271f5', '05b0ba1117c89bf5', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('train.seed=1',), ('7b000c7720d8a924', '1cdfe64266cf141e', '6480fad15b909875', 'a1209b15049a3b34', None)),
    (('reset.epoch=3',), ('a513945e451ac010', '22271ff0c718aac1', 'c69dc89136bf7d3e', 'a1209b15049a3b34', None)),
    (('prune.threshold=0.5',), ('a513945e451ac010', 'aea3b9da0e4dadc2', '90aaf531397d5710', 'a1209b15049a3b34', None)),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    shards = root / "shards"
    shards.mkdir()
    (shards / "manifest.json").write_text(json.dumps({"labels": ["a", "b"], "splits": {
        "train": {"shards": [{"sha256": "11" * 32}]}, "val": {"shards": [{"sha256": "22" * 32}]}}}))
    fashion = root / "fashion"
    fashion.mkdir()
    for i, name in enumerate(FILES_READ["fashion_mnist"]):
        (fashion / name).write_bytes(bytes([i]) * 16)
    return {"shards": shards, "fashion": fashion}


@pytest.mark.parametrize("overrides, expected", GOLDEN, ids=[" ".join(o) or "default" for o, _ in GOLDEN])
def test_every_preset_keeps_its_identities(compose: Callable[..., object], folders: dict[str, Path],
                                           overrides: tuple[str, ...], expected: tuple) -> None:
    where = [f"data.path={folders[READS_A_FOLDER[overrides[0]]]}"] if overrides and overrides[0] in READS_A_FOLDER else []
    cfg = compose(*overrides, *where)
    level = imp_level_key(cfg, 1) if cfg.prune.method == "imp" else None
    assert (dense_hash(cfg), ticket_key(cfg), cell_key(cfg), family_hash(cfg), level) == expected


def test_every_preset_and_experiment_in_conf_is_pinned() -> None:
    conf = Path(__file__).resolve().parents[3] / "conf"
    presets = {f"{group}={path.stem}" for group in ("model", "data", "train", "experiment")
               for path in (conf / group).glob("*.yaml")}
    assert presets <= {overrides[0] for overrides, _ in GOLDEN if overrides}
