"""`report.measure`: the epoch every run's accuracies are read at, the last one or the early-stop one.

- `final`: the last epoch's `val_accuracy` chooses the winners; the final weights' `test_accuracy` is shown.
- `early_stop`: every run, dense parents included, is read at its early-stop epoch (its minimum
  validation loss, lth.training.early_stop), as the lottery-ticket papers compare networks. The test
  accuracy of the weights there is logged on its own (`early_stop_test_accuracy`). The validation
  accuracy there is not, but the per-epoch `val_accuracy` history holds it (its step is the epochs
  done, which is what the early-stop epoch counts), so it is read from there: winners are still
  chosen on validation. A run with no early-stop point (it diverged, or was logged before the
  point existed) has no accuracy under this measure, and says so as a replicate that did not learn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mlflow.tracking import MlflowClient

from lth.report.collect import DenseRun, Family, Point
from lth.tracking import schema

MEASURES = ("final", "early_stop")
ValAt = Callable[[str, int], float | None]  # (run id, epoch) -> the val_accuracy logged at that epoch


def check_measure(measure: str) -> str:
    """`measure` if it is one of MEASURES.

    Raises:
        ValueError: Another value, in one line.
    """
    if measure not in MEASURES:
        raise ValueError(f"report.measure must be final or early_stop, got {measure!r}")
    return measure


def measure_sentence(measure: str) -> str:
    """One line for the top of the report: which epoch its accuracies were read at."""
    if measure == "early_stop":
        return ("Measure: early stop. Every accuracy is read at the run's early-stop epoch (its minimum validation "
                "loss): test accuracy of its weights there, and validation accuracy logged at that epoch.")
    return "Measure: final. Every accuracy is read at the run's last epoch."


def logged_val_at(run_id: str, epoch: int) -> float | None:
    """The `val_accuracy` a run logged at `epoch` (the latest, if a resumed run logged it twice); None if none."""
    found = [m for m in MlflowClient().get_metric_history(run_id, schema.VAL_ACCURACY) if m.step == epoch]
    return max(found, key=lambda m: m.timestamp).value if found else None


def _at_stop(run_id: str, finished: bool, epoch: int | None, test: float | None,
             val_at: ValAt) -> tuple[float | None, float | None]:
    """(val, test) of a run at its early-stop epoch; (None, None) without one."""
    if not finished or epoch is None or test is None:
        return None, None
    return val_at(run_id, epoch), test


def measured(family: Family, measure: str, val_at: ValAt | None = None) -> Family:
    """`family` as `measure` reads it: unchanged for `final`; at every run's early-stop epoch for `early_stop`.

    Args:
        val_at: Where the validation accuracy at an epoch is read (default: the run's MLflow history).
    """
    if check_measure(measure) == "final":
        return family
    read = val_at or logged_val_at

    def point(p: Point) -> Point:
        val, test = _at_stop(p.run_id, p.finished, p.early_stop_epoch, p.early_stop_test_accuracy, read)
        return replace(p, val_accuracy=val, test_accuracy=test)

    def dense(d: DenseRun) -> DenseRun:
        val, test = _at_stop(d.run_id, d.status == schema.FINISHED, d.early_stop_epoch, d.early_stop_test_accuracy,
                             read)
        return replace(d, val_accuracy=val, test_accuracy=test)

    return Family(family.family, [dense(d) for d in family.dense], [point(p) for p in family.points],
                  family.analyses)
