"""Which split chooses the winners, and which one the shown accuracies come from.

Winners are chosen on the validation split (the final epoch's `val_accuracy`) and the
table shows test accuracy, so the numbers a reader sees were not used to pick what
they describe. Two cases break that, and the report says so loudly: validation and
test are the same images (ImageNet without a held-out slice of train), or some runs
were logged before validation accuracy was recorded (then the test split decides).
"""

from __future__ import annotations

from dataclasses import dataclass

from lth.report.collect import Family
from lth.tracking import schema

VAL, TEST = schema.VAL_ACCURACY, schema.TEST_ACCURACY


@dataclass(frozen=True)
class Selection:
    """The metric that chooses winners, the splits behind it, and what is wrong with them."""

    metric: str  # val_accuracy, or test_accuracy when some run lacks it
    chosen_on: str  # name of the split the metric was measured on
    shown_on: str  # name of the split the shown accuracies come from
    warnings: tuple[str, ...] = ()
    note: str = ""  # what the choosing split is, where its name does not say it

    @property
    def split(self) -> str:
        """`val` or `test`: the short name of the choosing metric, for column headers and reasons."""
        return "val" if self.metric == VAL else "test"

    @property
    def sentence(self) -> str:
        """One line for the top of the report."""
        kind = "validation" if self.metric == VAL else "TEST"
        note = f" ({self.note})" if self.note else ""
        return f"Winners chosen on {kind} split `{self.chosen_on}`{note}; accuracies shown on `{self.shown_on}`."


def _split_names(params: dict[str, str]) -> tuple[str, str, str]:
    """(validation split, test split, what the validation split is) as the dense parent's data params say."""
    if params.get("data.name") == "imagenet":
        if "data.val_split" in params:
            return params["data.val_split"], params.get("data.test_split", "val"), ""
        evaluated = params.get("data.eval_split", "val")  # before val and test were separate: both read this split
        return evaluated, evaluated, ""
    fraction = params.get("data.val_fraction")  # array datasets: a stratified slice of train, test kept apart
    return "val", "test", f"a stratified {fraction} slice of train" if fraction else ""


def selection_of(family: Family) -> Selection:
    """Validation when every finished run has it; else test, with a warning either way it is compromised."""
    params = dict(family.dense[0].params) if family.dense else {}
    val_split, test_split, note = _split_names(params)
    warnings = []
    lacking = [d.run_id for d in family.finished_dense if d.val_accuracy is None]
    lacking += [p.run_id for p in family.points if p.learned and p.val_accuracy is None]
    metric = VAL
    if lacking:
        metric = TEST
        warnings.append(f"**WARNING: {len(lacking)} run(s) lack `val_accuracy` (logged before it was recorded): "
                        f"winners were chosen on the TEST split, the same numbers the table shows, so they are "
                        f"optimistic. Rerun these cells to choose on validation.**")
    elif val_split == test_split:
        warnings.append(f"**WARNING: validation and test are the same split (`{test_split}`): the winners were "
                        f"chosen on the very images their accuracies are shown on, so those are optimistic. "
                        f"Ingest with holdout_per_class>0 and set data.val_split=holdout to separate them.**")
    if metric == VAL:
        return Selection(metric, val_split, test_split, tuple(warnings), note)
    return Selection(metric, test_split, test_split, tuple(warnings))
