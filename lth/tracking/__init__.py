"""Everything lth keeps in MLflow: the client, artifacts, the claim with its lock, identities, the schema.

`from lth import tracking` gives the client's functions (`tracking.connect`,
`tracking.find_runs`, `tracking.active_run`, ...), imported on first use so that the
pure modules here (schema, identity, http) load without MLflow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["active_run", "cluster_job_tags", "connect", "connect_uri", "create_run", "download_folder",
           "existing_experiment", "fetch", "find_runs", "finished_children", "finished_run", "get_run", "log_folder",
           "log_metrics", "log_params", "log_to_run", "metric_history", "resume_cleanly", "retry_transient_errors",
           "rewound_from", "runs_page", "set_tags"]


def __getattr__(name: str) -> Any:
    """The client's functions, loaded with MLflow the first time one is asked for (PEP 562)."""
    if name in __all__:
        from lth.tracking import client

        return getattr(client, name)
    raise AttributeError(f"module 'lth.tracking' has no attribute {name!r}")
