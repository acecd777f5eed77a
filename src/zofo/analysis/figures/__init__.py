"""Figures drawn from the tables (``zofo.analysis.tables``), one module per concern; none computes a
statistic itself. Each figure is written as a PNG and the PDF of the same stem, and returns ``Drawn``:
the (png, pdf) pair with the numbers it plotted and the Figure, so its content can be checked without
reading pixels.

- ``style``: colours, line styles, the alpha axis, captions, ``save``.
- ``convergence``: metric against round or bits, one panel per model size; a bar per final-table row.
- ``studies``: final metric against the Byzantine fraction, alpha or a swept value; the one-shot gap.
- ``cost``: seconds per round and peak memory.
- ``communication``: bits per client and round against the formulas, and bits to the target.
"""

from zofo.analysis.figures.communication import communication
from zofo.analysis.figures.convergence import convergence, final_metric_bar, panel_order
from zofo.analysis.figures.cost import cost
from zofo.analysis.figures.studies import (
    GAP_ZERO_LABEL,
    heterogeneity,
    oneshot_gap,
    robustness,
    sweep,
    swept_axis,
)
from zofo.analysis.figures.style import (
    FALLBACK_COLORS,
    METHOD_COLORS,
    Drawn,
    family_style,
    method_color,
    save,
    style,
)

__all__ = [
    "FALLBACK_COLORS",
    "GAP_ZERO_LABEL",
    "METHOD_COLORS",
    "Drawn",
    "communication",
    "convergence",
    "cost",
    "family_style",
    "final_metric_bar",
    "heterogeneity",
    "method_color",
    "oneshot_gap",
    "panel_order",
    "robustness",
    "save",
    "style",
    "sweep",
    "swept_axis",
]
