"""`python -m lth.plan` and its model (lth.sweep.cluster_schedule): jobs, waves, and why S < N."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lth import plan as plan_cli
from lth.sweep.cluster_schedule import Cluster, Job, makespan, plan, why

SEED_RESETS = (0, 1, 2, 4, 6)


def seed_jobs(epochs: int = 350) -> list[Job]:
    return [Job("dense", epochs, 0)] + [Job("ticket", epochs - k, 1) for _ in range(20) for k in SEED_RESETS]


def figures(text: str) -> dict[str, float]:
    found = re.search(r"speed-up S = ([\d.]+), efficiency E = S/N = ([\d.]+)", text)
    assert found, text
    return {"S": float(found.group(1)), "E": float(found.group(2))}


def test_jobs_are_placed_longest_first_on_the_first_free_slot() -> None:
    assert makespan([3, 3, 2, 2, 2], 2) == 7  # 3+2+2 and 3+2
    assert makespan([5, 1, 1, 1], 4) == 5 and makespan([], 3) == 0 and makespan([4, 4], 10) == 4


def test_the_seed_s_own_figures_with_the_dense_parent_counted() -> None:
    # 350 epochs at 4.5 min, 20 thresholds x 5 resets, 20 nodes of 4 GPUs, a job per node.
    result = plan(seed_jobs(), Cluster(slots=20, gpus_per_job=4, epoch_minutes=4.5))
    one_slot = (350 + 20 * sum(350 - k for k in SEED_RESETS)) * 4.5 / 60
    # Every slot gets one ticket of each reset epoch (longest first), after the dense stage.
    wall = (350 + sum(350 - k for k in SEED_RESETS)) * 4.5 / 60
    assert result.one_slot_hours == pytest.approx(one_slot) and result.wall_hours == pytest.approx(wall)
    assert result.serial_hours == pytest.approx(26.25) and result.waves == (1, 5)
    assert result.speedup == pytest.approx(one_slot / wall) and result.speedup == pytest.approx(16.81, abs=0.01)
    assert result.efficiency == pytest.approx(result.speedup / 20)
    f = 26.25 / one_slot
    assert result.amdahl_speedup == pytest.approx(1 / (f + (1 - f) / 20))
    assert result.gpu_hours == pytest.approx(4 * one_slot) and result.gpu_epochs == 4 * (350 + 20 * 1737)
    assert "dense stage (26.2 h) must finish" in why(result) and "5 wave(s)" in why(result)


def test_a_sweep_that_fits_in_one_wave_without_a_serial_part_is_n_times_faster() -> None:
    result = plan([Job("ticket", 10, 1)] * 8, Cluster(slots=8, gpus_per_job=1, epoch_minutes=1))
    assert result.speedup == pytest.approx(8) and result.efficiency == pytest.approx(1)


def test_plan_of_the_seed_grid_on_20_nodes_says_s_is_below_20_and_why(tmp_path: Path, monkeypatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    plan_cli.main(["experiment=seed_grid", "--nodes", "20"])
    text = capsys.readouterr().out
    assert "100 ticket jobs after 1 dense parent" in text and "N = 20 jobs at once" in text
    assert figures(text)["S"] < 20 and "because the dense stage" in text and "wave(s)" in text
    assert not (tmp_path / "mlflow.db").exists()  # planning creates no store


def test_the_frontier_plan_prices_its_worst_case_against_the_grid(tmp_path: Path, monkeypatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    seed = ["cluster=slurm", "train.epochs=350", "--nodes", "20", "--epoch-minutes", "4.5"]
    plan_cli.main(["experiment=seed_grid", *seed])
    grid = capsys.readouterr().out
    plan_cli.main(["experiment=seed_frontier", *seed])
    frontier = capsys.readouterr().out
    assert "4 GPUs per job" in grid and "GPU-hours 10,527.0" in grid  # 4 x 2,631.75 h
    assert ("5 line(s) x 1 replicate(s), at most 4+1+1+1+2 probes per line in 5 round(s), the last verifying the flip "
            "with 2 probe(s) below it: 45 ticket jobs") in frontier  # 35 narrowing + 5 x 2 verifying
    assert "up to P x max_rounds = 16 narrowing probes" in frontier
    hours = [float(re.search(r"GPU-hours ([\d,.]+)", t).group(1).replace(",", "")) for t in (grid, frontier)]
    assert 0.37 * hours[0] < hours[1] < 0.47 * hours[0]  # (1 + 45) / (1 + 100) of the grid's job-epochs, about
    plan_cli.main(["experiment=seed_frontier", *seed, "hydra.sweeper.frontier.verify_steps=0"])
    trusting = capsys.readouterr().out
    assert "4+1+1+1 probes per line in 4 round(s); flips are not verified" in trusting and "35 ticket jobs" in trusting
    plan_cli.main(["experiment=seed_frontier", *seed, "hydra.sweeper.frontier.max_rounds=1"])
    hurried = capsys.readouterr().out  # one round of 4 cannot resolve a flip: no verification round is promised
    assert "at most 4 probes per line in 1 round(s), the flip still unresolved (so not verified) at the end" in hurried


def test_epoch_times_come_from_the_sweep_s_dense_run_in_mlflow(tmp_path: Path, monkeypatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from hydra import compose, initialize_config_dir
    from mlflow.tracking import MlflowClient

    from lth import tracking
    from lth.tracking import schema
    from lth.tracking.identity import dense_hash

    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=plan_cli.CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"])
    experiment = tracking.connect(cfg.tracking.uri, cfg.tracking.experiment)
    client = MlflowClient()
    run = client.create_run(experiment, tags={schema.ROLE: schema.DENSE_ROLE, schema.KEY: dense_hash(cfg)})
    client.log_metric(run.info.run_id, schema.TRAIN_SECONDS, 15 * 12.0)  # 15 epochs of 12 s
    client.log_metric(run.info.run_id, schema.EPOCHS_TRAINED, 15)
    client.set_terminated(run.info.run_id, "FINISHED")
    plan_cli.main([f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "prune.threshold=0.5,0.8", "reset.epoch=0,1",
                   "--nodes", "2", "--job-overhead-minutes", "0.5"])
    text = capsys.readouterr().out
    assert f"epoch: 0.2 min from dense run {run.info.run_id}" in text and "only reuses it" in text
    # 4 tickets of 15 or 14 epochs at 0.2 min + 0.5 min each on 2 slots: 3.5 + 3.3 = 6.8 min each; the reuse 0.5.
    assert "wall-clock: 7.3 min (dense stage 0.5 min" in text


def test_amdahl_s_bound_counts_dense_parents_side_by_side_once() -> None:
    # Two seeds: two dense parents of 10 epochs run side by side, then 8 tickets of 10 epochs on 4 slots.
    jobs = [Job("dense", 10, 0)] * 2 + [Job("ticket", 10, 1)] * 8
    result = plan(jobs, Cluster(slots=4, gpus_per_job=1, epoch_minutes=6))
    # Serial: 1 h of wall-clock; the rest (8 h of tickets) splits perfectly at best: S <= 10 / (1 + 8 / 4).
    assert result.amdahl_speedup == pytest.approx(10 / 3) and result.speedup <= result.amdahl_speedup + 1e-9
    assert result.speedup == pytest.approx(10 / 3)


def test_a_dense_stage_that_only_reuses_its_parent_is_not_called_a_ticket_wave() -> None:
    result = plan([Job("dense", 0, 0)] + [Job("ticket", 5, 1)] * 3, Cluster(slots=2, gpus_per_job=1, epoch_minutes=1))
    assert "2 wave(s)" in why(result) and "1+2" not in why(result)


def test_a_job_over_several_nodes_takes_all_of_them(tmp_path: Path, monkeypatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    plan_cli.main(["cluster=slurm", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4",
                   "prune.threshold=0.5,0.8", "--nodes", "20"])
    assert "8 GPUs per job" in (text := capsys.readouterr().out) and "N = 10 jobs at once" in text


def test_only_the_dense_parents_logged_in_mlflow_count_as_trained(tmp_path: Path, monkeypatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from hydra import compose, initialize_config_dir
    from mlflow.tracking import MlflowClient

    from lth import tracking
    from lth.tracking import schema
    from lth.tracking.identity import dense_hash

    monkeypatch.chdir(tmp_path)
    uri = f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"
    with initialize_config_dir(config_dir=plan_cli.CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[uri, "train.seed=0"])
    experiment = tracking.connect(cfg.tracking.uri, cfg.tracking.experiment)
    client = MlflowClient()
    run = client.create_run(experiment, tags={schema.ROLE: schema.DENSE_ROLE, schema.KEY: dense_hash(cfg)})
    client.log_metric(run.info.run_id, schema.TRAIN_SECONDS, 15 * 12.0)  # seed 0 trained: 15 epochs of 12 s
    client.log_metric(run.info.run_id, schema.EPOCHS_TRAINED, 15)
    client.set_terminated(run.info.run_id, "FINISHED")
    plan_cli.main([uri, "prune.threshold=0.5", "train.seed=0,1", "--nodes", "2", "--job-overhead-minutes", "0"])
    text = capsys.readouterr().out
    # Seed 1's parent still trains its 15 epochs (3 min); seed 0's is only reused.
    assert "dense stage 3.0 min" in text and "GPU-epochs 43" in text  # 15 (seed 1) + 2 tickets x 14 (k = 1)
    assert "1 of 2 dense parent(s) already trained" in text
