"""Find-or-create a run by identity, exclusively: the idempotent core of every stage.

A stage (dense parent, ticket, IMP level) is claimed under a file lock named after its
identity. Inside the claim, a FINISHED run is reused, an unfinished one is resumed
(same MLflow run), and otherwise a new run is created.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lth.config.cell import StateConfig
from lth.tracking import client
from lth.tracking.lock import exclusive
from lth.tracking.schema import ROLE_LABELS

log = logging.getLogger("lth")


@dataclass(frozen=True)
class Claim:
    """The run a stage works in; `finished` holds the run when there is nothing left to do."""

    run_id: str
    finished: Run | None


@contextlib.contextmanager
def claim(state: StateConfig, experiment_id: str, role: str, key: str, name: str,
          tags: dict[str, str], dense_run_id: str | None = None) -> Iterator[Claim]:
    """Hold the stage's lock and yield the run to reuse, resume or start.

    Args:
        state: Where the locks are (`lth.state_dir`) and how long to wait (`lth.lock_timeout_min`).
        experiment_id: MLflow experiment of the search.
        role: `lth.role` tag of the stage (dense, ticket, imp_level).
        key: Identity hash of the stage.
        name: Run name, also used in messages.
        tags: Tags of a newly created run.
        dense_run_id: For a sparse stage, the dense run it rewinds from; runs of the same
            identity rewound from another dense run are neither reused nor resumed.
    """
    label = ROLE_LABELS.get(role, role)
    with exclusive(state.state_dir, f"{role}-{key}", state.lock_timeout_min, f"{label} '{name}'"):
        every = client.find_runs(experiment_id, role, key)
        runs = client.rewound_from(every, dense_run_id)
        if len(runs) < len(every):  # e.g. the tickets of a dense parent that was deleted and trained again
            log.info("ignoring %d %s run(s) of this identity rewound from another dense run than %s",
                     len(every) - len(runs), label, dense_run_id)
        done = client.finished_run(runs)
        if done is not None:
            log.info("reusing finished %s %s (%s): no retraining", label, done.info.run_id, name)
            yield Claim(done.info.run_id, MlflowClient().get_run(done.info.run_id))
            return
        if runs:
            run_id = runs[-1].info.run_id
            client.resume_cleanly(run_id)
            log.info("resuming unfinished %s %s (%s)", label, run_id, name)
        else:
            run_id = client.create_run(experiment_id, role, key, name, tags)
            log.info("starting %s %s (%s)", label, run_id, name)
        for tag, value in client.cluster_job_tags().items():  # the job that trains it (the latest, if requeued)
            MlflowClient().set_tag(run_id, tag, value)
        yield Claim(run_id, None)
