"""Pareto fronts: the points no other point beats on both a score (higher is better) and a cost
(lower is better). Used for each search's own trials and for the leaderboard's cells."""

from __future__ import annotations

import math
from collections.abc import Sequence


def non_dominated(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the `(score, cost)` points on the front. A point another equals on one and beats
    on the other is dominated; points missing either value are off the front."""
    usable = [(i, s, c) for i, (s, c) in enumerate(points)
              if s is not None and c is not None and not math.isnan(s) and not math.isnan(c)]
    return [i for i, s, c in usable
            if not any(s2 >= s and c2 <= c and (s2 > s or c2 < c) for _, s2, c2 in usable)]
