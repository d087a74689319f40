"""lth: lottery-ticket search for MobileNetV2, configured by Hydra and tracked in MLflow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lth.export import Ticket

__version__ = "0.1.0"


def _register_config_resolvers() -> None:
    """Let conf/ compute a default from another key (`prune.scope` from `prune.structure`), and compose onto
    the declared schema (lth.config.schema), in every process that reads a config: each imports lth first."""
    from omegaconf import OmegaConf

    from lth.config.schema import register
    from lth.config.vocabulary import default_scope

    if not OmegaConf.has_resolver("lth.default_scope"):
        OmegaConf.register_new_resolver("lth.default_scope", default_scope)
    register()


_register_config_resolvers()


def load_ticket(run_id: str, tracking_uri: str | None = None, weights: str = "final") -> Ticket:
    """Load a finished ticket from MLflow; see `lth.export.load_ticket`.

    Imported lazily so that `import lth` does not start TensorFlow.
    """
    from lth.export import load_ticket as load

    return load(run_id, tracking_uri, weights)


__all__: list[Any] = ["load_ticket"]
