"""The papers' headline claims set against what this run measured: the claims table, by concern.

Each claim of FeedSign, FedKSeed, FedKSeed-Pro, Ferret and one-shot FL (their papers; baselines/) gets
one row: the claim in a sentence, the evidence measured here (a sentence that quotes its numbers), a
verdict from ``VERDICTS`` and the reason for it. Every claim is always present, in the fixed order of
``CLAIMS``; a claim whose study or method this config did not run is "inconclusive at this scale", and
its reason names what is missing.

Statistics, the same for every claim that compares final metrics (``final_metric_table`` rows, and
the one-shot study's ``gap_table``), all of them ``zofo.analysis.stats``'s:

- A group's mean has standard error sd / sqrt(n) (sd over seeds, ddof=1). A difference of two groups,
  d = mean_a - mean_b, has se = sqrt(sd_a^2/n_a + sd_b^2/n_b) (``stats.difference``; the one-shot gap is
  one, ``stats.oneshot_gap`` says why group means); a difference of differences (a drop compared with
  another drop, a gap at one model size against the gap at another) adds all four groups' squared
  standard errors.
- Direction claims ("a is more accurate than b"): holds if d > 2 se in the claimed direction, does not
  hold if d < -2 se, otherwise inconclusive (within 2 standard errors over seeds).
- "At least as good" claims (comparable accuracy, a gap of at most about 6 points, a drop no larger
  than another's): holds unless d falls short of the claimed bound by more than 2 se, in which case it
  does not hold. With unknown se these are inconclusive as well.
- With fewer than 2 seeds in any group involved, se is unknown and the verdict is inconclusive.
- Exact claims (bit counts from the communication table) hold or do not hold with no statistics: the
  bits are counted from the payloads, so the numbers are the same in every seed.
- Claims whose size grows with the model (Ferret's communication ratio, proportional to d) hold when
  the measured value is of the claimed order of magnitude; below it they are inconclusive at this
  scale, with the measured value and d, unless d already reaches a billion parameters.
- Timings (Ferret's compute claim) come from a machine shared with other jobs; their ratio gets no
  standard error and is read against the claimed factor only.

Metrics are fractions in [0, 1] (accuracy, Rouge-L F), so "6 points" is 0.06.

Modules: ``rules`` (verdicts and the decision rules), ``evidence`` (the tables a claims table reads and
how a claim picks one group out of them), one module per paper (``feedsign``, ``fedkseed``, ``ferret``,
``oneshot``) and ``table`` (the claims in order, the table, its files).
"""

from zofo.analysis.claims.evidence import Evidence, largest_model, read_evidence
from zofo.analysis.claims.rules import (
    COLUMNS,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    VERDICTS,
    Claim,
    Finding,
)
from zofo.analysis.claims.table import CLAIMS, assess, claims_table, write_claims

__all__ = [
    "CLAIMS",
    "COLUMNS",
    "DOES_NOT_HOLD",
    "HOLDS",
    "INCONCLUSIVE",
    "VERDICTS",
    "Claim",
    "Evidence",
    "Finding",
    "assess",
    "claims_table",
    "largest_model",
    "read_evidence",
    "write_claims",
]
