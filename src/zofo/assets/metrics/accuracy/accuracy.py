"""Accuracy: the fraction of predictions equal to their reference label."""

import datasets
import evaluate

from zofo.assets.metrics import accuracy

_DESCRIPTION = "Accuracy = (number of predictions equal to the reference) / (number of predictions)."
_KWARGS = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): reference labels.
Returns:
    accuracy (float): in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        # One definition for this module and for runs, which score without importing evaluate.
        return {"accuracy": accuracy(predictions, references)}
