"""A ticket outside the search: loaded back from MLflow, compacted, and exported as TFLite.

- `load_ticket` (lth.export.ticket): a finished ticket as a Keras model with its masks attached.
- `compact_model` (lth.export.compact): the same function with every channel that only carries a
  constant removed, and that constant folded into the next layer's bias.
- `python -m lth.export <run id>` (lth.export.__main__): the ticket compacted, converted to TFLite
  (float32, and with sparse weights), measured and logged back to its run.

`Ticket` and `load_ticket` are imported on first use (PEP 562), so the command line answers
`--help` and bad arguments without starting TensorFlow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Ticket", "load_ticket"]


def __getattr__(name: str) -> Any:
    """`Ticket` and `load_ticket`, loaded with Keras the first time one is asked for."""
    if name in __all__:
        from lth.export import ticket

        return getattr(ticket, name)
    raise AttributeError(f"module 'lth.export' has no attribute {name!r}")
