"""Rouge-L F1 of generated strings against reference strings, with the scorer chosen by config name.

- ``rouge`` (also the default config): the ``rouge`` 1.0.1 package, ``Rouge().get_scores``'s
  ``rouge-l`` F, the scorer the FedKSeed and Ferret code report. It is summary-level Rouge-L: texts are
  cut into sentences at ".", split on whitespace, case and punctuation are kept, and (its default
  ``exclusive=True``) the LCS and both lengths count *distinct* words. It raises on a hypothesis or
  reference with no sentence; such a pair (an empty or whitespace/dot-only string, e.g. a model that
  emits EOS at once) scores 0 here, as it gets no credit under any Rouge definition.
- ``rouge-score``: Google's ``rouge_score`` package, ``RougeScorer(["rougeL"])`` fmeasure: sentence-
  level LCS over lowercased alphanumeric tokens, repeats counted, no stemming. An empty side scores 0.

The two can differ on the same pair (repeated words, punctuation, case), so every reported number
names its scorer.
"""

import datasets
import evaluate

SCORERS = ("rouge", "rouge-score")

_DESCRIPTION = "Rouge-L F1 (longest common subsequence of words), mean over prediction/reference pairs."
_KWARGS = """
Args:
    predictions (list of str): generated texts.
    references (list of str): one reference text per prediction.
Returns:
    rouge_l (float): mean Rouge-L F1, in [0, 1].
    scorer (str): the scorer used, "rouge" (rouge 1.0.1) or "rouge-score".
"""


def _no_words(text: str) -> bool:
    # The same emptiness rouge 1.0.1 trips on: nothing left once "." and whitespace are removed.
    return not text.replace(".", " ").split()


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class RougeL(evaluate.Metric):
    def _scorer_name(self) -> str:
        name = "rouge" if self.config_name in (None, "default") else self.config_name
        if name not in SCORERS:
            raise ValueError(f"rouge_l config_name: got {self.config_name!r}; allowed: {list(SCORERS)}")
        return name

    def _info(self):
        self._scorer_name()  # fail when the module is loaded, not at the first compute
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        if len(predictions) == 0:
            raise ValueError("Rouge-L of zero predictions is undefined")
        name = self._scorer_name()
        pairs = list(zip(predictions, references, strict=True))
        if name == "rouge":
            from rouge import Rouge

            rouge = Rouge(metrics=["rouge-l"], stats=["f"])
            scores = [
                0.0 if _no_words(p) or _no_words(r) else rouge.get_scores(p, r)[0]["rouge-l"]["f"]
                for p, r in pairs
            ]
        else:
            from rouge_score import rouge_scorer

            scorer = rouge_scorer.RougeScorer(["rougeL"])
            scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in pairs]
        return {"rouge_l": float(sum(scores) / len(scores)), "scorer": name}
