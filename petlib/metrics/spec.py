"""Each metric of `metrics.json` declared once, beside the function that computes it.

A `MetricSpec` says where the figure lives (section and key, dotted inside the section), how a table
labels it, which direction is better, how its 95% interval is computed and whether it is kept per
training repeat. 04_compare's rows, the repeat keys, the interval keys and the schema documentation
are all derived from the specs (`petlib.schema`); a test fails when metrics.json and the specs differ.
"""
from __future__ import annotations

from dataclasses import dataclass

CLUSTER_DRAWS = 200  # bootstrap draws that recompute clustering (a k-means costs 20x all the other figures)
RESAMPLED = frozenset({"identities", "clusters", "images"})  # intervals from resampling test identities

# How a figure's 95% interval is computed (the `interval` of a spec).
INTERVALS_DOC = {
    "identities": "bootstrap over test identities (metrics.json `ci95`)",
    "clusters": f"bootstrap over test identities, k-means on the identities a draw holds, each once, in "
                f"{CLUSTER_DRAWS} draws, their spread widened from a subsample's to the full set's and centred on its "
                f"figure (`ci95`)",
    "images": "bootstrap over the test identities of the degraded images (`ci95`)",
    "none": "no interval yet",
    "exact": "a measured fact (a count, a size): no sampling error",
    "timing": "repeated timings: metrics.json keeps one median; 04_compare times a block's models interleaved "
              "and resamples the rounds",
}


@dataclass(frozen=True)
class MetricSpec:
    section: str
    key: str
    label: str
    higher: bool | None = True  # which direction is better; None: a count or setting, never ranked
    interval: str = "none"
    per_repeat: bool = False  # kept for every training repeat (metrics.json `repeats`)
    category: str = ""  # 04_compare's row group; "" keeps it out of the comparison table
    doc: str = ""

    @property
    def path(self) -> tuple[str, ...]:
        return (self.section, *self.key.split("."))

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


# 04_compare's row order: sections in this order, each in the order its module declares its figures.
SECTION_ORDER = ("retrieval", "ranking", "verification", "open_set", "clustering", "triplets", "overfitting",
                 "robustness", "efficiency")
_DECLARED: list[MetricSpec] = []


def declare(section: str, key: str, label: str, **kw) -> MetricSpec:
    """Register one metric of a section of `SECTION_ORDER`."""
    s = MetricSpec(section, key, label, **kw)
    if s.interval not in INTERVALS_DOC:
        raise ValueError(f"{s.name}: interval {s.interval!r} is not one of {list(INTERVALS_DOC)}")
    if section not in SECTION_ORDER:
        raise ValueError(f"{s.name}: section {section!r} is not one of {SECTION_ORDER}")
    if any(o.name == s.name for o in _DECLARED):
        raise ValueError(f"{s.name}: declared twice")
    _DECLARED.append(s)
    return s


def count(section: str, key: str, doc: str = "") -> MetricSpec:
    """A count or setting reported beside the figures (never ranked, no interval)."""
    return declare(section, key, key, higher=None, interval="exact", doc=doc)


def specs(section: str | None = None) -> list[MetricSpec]:
    """The declared metrics (of one section), in 04_compare's row order."""
    ordered = sorted(_DECLARED, key=lambda s: SECTION_ORDER.index(s.section))  # stable: declaration order within
    return [s for s in ordered if section is None or s.section == section]


def compared() -> list[MetricSpec]:
    """04_compare's rows that the paired identity draws test (a category, a resampled interval)."""
    return [s for s in specs() if s.category and s.interval in RESAMPLED]
