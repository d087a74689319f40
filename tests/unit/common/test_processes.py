"""A run's processes: where the group comes from, each process's part of a batch, padded evaluation, TF refused."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lth.common.processes import TENSORFLOW_REFUSED, Processes, from_environment
from lth.config.vocabulary import ConfigError
from lth.data.splits import Part
from tests.support.jobs import lth_env


def test_the_spark_launchers_variables_name_the_group() -> None:
    found = from_environment({"LTH_PROCESS_COUNT": "2", "LTH_PROCESS_ID": "1", "LTH_COORDINATOR": "host:123"})
    assert found == Processes(1, 2, "host:123") and not found.leader and found.several


def test_slurm_tasks_form_a_group_only_inside_a_job_step() -> None:
    step = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_STEP_ID": "0"}
    assert from_environment(step) == Processes(3, 4, None)  # jax.distributed finds the coordinator itself
    batch_script = {k: v for k, v in step.items() if k != "SLURM_STEP_ID"}  # sbatch's script, before srun
    assert from_environment(batch_script) == Processes()
    assert from_environment({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_STEP_ID": "0"}) == Processes()


@pytest.mark.parametrize(("environ", "message"), [
    ({"LTH_PROCESS_COUNT": "2", "LTH_PROCESS_ID": "0"}, "LTH_PROCESS_COUNT=2 needs LTH_COORDINATOR"),
    ({"LTH_PROCESS_COUNT": "2", "LTH_PROCESS_ID": "2", "LTH_COORDINATOR": "h:1"}, r"process 2 of 2: the index must be"),
])
def test_a_malformed_group_is_a_config_error(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_environment(environ)


def test_the_parts_of_a_batch_are_its_rows_in_order() -> None:
    rows = np.arange(10, 18)
    parts = [Part(index, 4).of(rows) for index in range(4)]
    assert [part.tolist() for part in parts] == [[10, 11], [12, 13], [14, 15], [16, 17]]
    assert Part().of(rows).tolist() == rows.tolist()


def test_training_batches_split_into_the_single_process_batch() -> None:
    from lth.data.pydataset import EpochOrderedBatches
    from lth.data.splits import EpochCounter

    images = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1)
    arrays = (images, np.arange(40, dtype=np.int32))
    whole = EpochOrderedBatches(arrays, 8, seed=3, epoch=EpochCounter())
    halves = [EpochOrderedBatches(arrays, 8, seed=3, epoch=EpochCounter(), part=Part(i, 2)) for i in range(2)]
    for index in range(len(whole)):
        joined = np.concatenate([half[index][1] for half in halves])
        np.testing.assert_array_equal(joined, whole[index][1])


def test_the_last_evaluation_batch_is_padded_with_weightless_rows() -> None:
    from lth.data.pydataset import OrderedBatches

    arrays = (np.ones((37, 2, 2, 1), np.uint8), np.arange(37, dtype=np.int32))
    parts = [OrderedBatches(arrays, 16, replicas=2, part=Part(i, 2)) for i in range(2)]
    assert len(parts[0]) == 3
    last = [part[2] for part in parts]  # 5 real rows, padded to 6: 3 per process
    assert [len(labels) for _, labels, _ in last] == [3, 3]
    assert np.concatenate([labels for _, labels, _ in last])[:5].tolist() == [32, 33, 34, 35, 36]
    assert np.concatenate([weights for _, _, weights in last]).tolist() == [1, 1, 1, 1, 1, 0]
    assert parts[0].loss_factor == pytest.approx(38 / 37)  # Keras divides the last batch by 6, not 5
    assert OrderedBatches(arrays, 16).loss_factor == 1.0 and len(OrderedBatches(arrays, 16)[2]) == 2


def test_tensorflow_over_two_processes_is_refused_in_one_line_before_any_compute(tmp_path) -> None:
    env = {**lth_env(), "LTH_PROCESS_COUNT": "2", "LTH_PROCESS_ID": "0", "LTH_COORDINATOR": "127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "lth.train", "train.backend=tensorflow", "lth.verbose=0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"lth: error: {TENSORFLOW_REFUSED.format(count=2)}"
    assert "keras-team/keras#20585" in TENSORFLOW_REFUSED and "train.backend=jax" in TENSORFLOW_REFUSED
    assert not (tmp_path / "mlflow.db").exists()  # refused before the tracking store was touched


def test_a_spark_master_with_brackets_reaches_hydra_quoted() -> None:
    from lth.train import quote_spark_master

    argv = ["lth.train", "cluster=spark", "spark.master=local-cluster[2,1,2048]", "spark.workers=2",
            "+spark.master=yarn", "spark.master='local[2]'"]
    assert quote_spark_master(argv) == ["lth.train", "cluster=spark", "spark.master='local-cluster[2,1,2048]'",
                                        "spark.workers=2", "+spark.master='yarn'", "spark.master='local[2]'"]
