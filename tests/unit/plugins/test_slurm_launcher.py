"""lth's SLURM launcher submits with the executor hydra-submitit-launcher's own `launch` prepares.

Both launches run for real (Hydra composes the sweep, submitit writes the sbatch file and
the pickles) up to the one step that needs a SLURM controller: the `sbatch` call, which is
stopped here and hands back the file it would have submitted.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.types import HydraContext
from hydra.utils import instantiate
from omegaconf import DictConfig
from submitit.slurm.slurm import SlurmExecutor

if TYPE_CHECKING:
    from hydra_plugins.lth_launcher.slurm_launcher import SlurmLauncher

LTH_LAUNCHER = "hydra_plugins.lth_launcher.slurm_launcher"
# In the SLURM stage (`make test-slurm`): submitit refuses to build a SLURM executor where the SLURM client is not
# installed, and CI installs it only there. No controller is needed: sbatch is never called.
pytestmark = pytest.mark.slurm
CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"
SETUP = ["export LTH_SETUP_MARK=1", "module load cuda/12"]
# Two cells of one dense parent, as the sweeper hands them over: the parent launch submits them as an array.
SWEEP = [["cluster=slurm", f"prune.threshold={threshold}", "reset.epoch=1"] for threshold in (0.5, 0.8)]


@dataclass(frozen=True)
class Submission:
    """What would have gone to `sbatch`: the executor's settings and the file it wrote."""

    folder: Path
    max_num_timeout: int
    parameters: dict[str, Any]
    sbatch: str


class Submitted(Exception):
    """Raised instead of running `sbatch`, carrying the submission."""

    def __init__(self, submission: Submission) -> None:
        super().__init__("sbatch")
        self.submission = submission


@pytest.fixture(autouse=True)
def slurm_client() -> None:
    """Skip without a SLURM client (srun) on PATH; under LTH_REQUIRE_SLURM=1 (as in CI) that is an error."""
    if shutil.which("srun") is None:
        message = "no SLURM client (srun) on PATH: run `tools/slurm_localhost.sh start` as root"
        if os.environ.get("LTH_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def stop_at_sbatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit writes the sbatch file, then asks for the command that submits it: stop there."""
    def stop(executor: SlurmExecutor, submission_file: Path) -> list[str]:
        raise Submitted(Submission(executor.folder, executor.max_num_timeout, dict(executor.parameters),
                                   Path(submission_file).read_text()))

    monkeypatch.setattr(SlurmExecutor, "_make_submission_command", stop)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[SlurmLauncher]:
    """The launcher Hydra instantiates for `cluster=slurm`, with setup lines and an extra sbatch option."""
    overrides = ["cluster=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}", "+hydra.sweep.mode=750",
                 f"hydra.launcher.setup=[{','.join(repr(line) for line in SETUP)}]",
                 "++hydra.launcher.additional_parameters={wckey: lth-test}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        launcher = instantiate(cfg.hydra.launcher)
        # By name: Hydra's plugin scan re-imports the hydra_plugins modules, so a class imported before is stale.
        assert f"{type(launcher).__module__}.{type(launcher).__name__}" == f"{LTH_LAUNCHER}.SlurmLauncher"
        launcher.setup(hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks()),
                       task_function=lambda _: None, config=cfg)
        yield launcher


def _first_submission(launch: Any) -> Submission:
    with pytest.raises(Submitted) as stopped:
        launch(SWEEP, 0)
    return stopped.value.submission


def _sweep_dir(config: DictConfig) -> tuple[bool, int]:
    path = Path(str(config.hydra.sweep.dir))
    return path.is_dir(), stat.S_IMODE(path.stat().st_mode) if path.exists() else 0


@pytest.mark.usefixtures("stop_at_sbatch")
def test_the_first_submission_uses_the_executor_and_sweep_dir_of_the_parent_launch(launcher: SlurmLauncher) -> None:
    assert launcher.config is not None
    parent = _first_submission(super(type(launcher), launcher).launch)  # hydra-submitit-launcher's: the tickets' array
    parent_sweep_dir = _sweep_dir(launcher.config)
    shutil.rmtree(Path(str(launcher.config.hydra.sweep.dir)))
    ours = _first_submission(launcher.launch)  # lth's: the dense parent, submitted before the array
    assert _sweep_dir(launcher.config) == parent_sweep_dir == (True, 0o750)
    assert (ours.folder, ours.max_num_timeout) == (parent.folder, parent.max_num_timeout)
    # Only what the dense stage means to change: its job name, and being one job, not an array.
    assert ours.parameters.pop("job_name") == "lth-dense" and parent.parameters.pop("job_name") == "lth"
    assert parent.parameters.pop("map_count") == len(SWEEP)
    assert ours.parameters == parent.parameters


@pytest.mark.usefixtures("stop_at_sbatch")
def test_setup_lines_and_sbatch_options_arrive_as_plain_values(launcher: SlurmLauncher) -> None:
    submission = _first_submission(launcher.launch)
    assert submission.parameters["setup"] == SETUP and type(submission.parameters["setup"]) is list
    assert type(submission.parameters["additional_parameters"]) is dict
    lines = submission.sbatch.splitlines()
    assert all(line in lines for line in SETUP)  # each one a shell line of its own, before srun
    assert "#SBATCH --wckey=lth-test" in lines
    assert "Config" not in submission.sbatch  # no ListConfig or DictConfig repr anywhere
