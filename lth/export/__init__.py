"""A ticket outside the search: loaded back from MLflow, compacted, and exported as TFLite.

- `load_ticket` (lth.export.ticket): a finished ticket as a Keras model with its masks attached.
- `compact_model` (lth.export.compact): the same function with every channel that only carries a
  constant removed, and that constant folded into the next layer's bias.
- `python -m lth.export <run id>` (lth.export.__main__): the ticket compacted, converted to TFLite
  (float32, and with sparse weights), measured and logged back to its run.
"""

from __future__ import annotations

from lth.export.ticket import Ticket, load_ticket

__all__ = ["Ticket", "load_ticket"]
