"""The difficulty table (terms x digits per task) and the disjoint seed ranges of each split."""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("chain_sum", "products")


@dataclass(frozen=True)
class Spec:
    """One reasoning-gym task configuration.

    ``chain_sum``: ``terms`` is the (min, max) number of terms and ``digits`` the (min, max) digits of every term
    (reasoning-gym draws one digit count per problem). ``products``: always 2 terms; ``digits`` is the number of
    digits of the (first, second) factor.
    """

    task: str
    terms: tuple[int, int]
    digits: tuple[int, int]


# The one difficulty table. Every problem records its level; a level mixes its two specs half and half.
LEVELS: dict[int, tuple[Spec, ...]] = {
    1: (Spec("chain_sum", (2, 3), (1, 1)), Spec("products", (2, 2), (1, 1))),
    2: (Spec("chain_sum", (2, 3), (2, 2)), Spec("products", (2, 2), (2, 1))),
    3: (Spec("chain_sum", (4, 5), (2, 2)), Spec("products", (2, 2), (3, 1))),
    4: (Spec("chain_sum", (3, 4), (3, 3)), Spec("products", (2, 2), (2, 2))),
    5: (Spec("chain_sum", (5, 6), (3, 3)), Spec("products", (2, 2), (3, 2))),
}
ALL_LEVELS = tuple(LEVELS)


@dataclass(frozen=True)
class SeedRange:
    """Half-open range ``[start, stop)`` of problem seeds."""

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and self.start <= seed < self.stop


# The one seed table. A problem's seed is the reasoning-gym item seed (``random.Random(seed)`` draws it), so
# problems of different splits never share a generator state. Small levels have few distinct problems (level 1
# products: 100), so the same *text* can still occur in two splits; evaluation reports that overlap.
SPLITS: dict[str, SeedRange] = {
    "train": SeedRange(0, 100_000_000),
    "validation": SeedRange(100_000_000, 101_000_000),
    "test": SeedRange(200_000_000, 201_000_000),
}


def check_levels(levels: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """The levels as a tuple; ValueError naming the valid ones when one is unknown or none is given."""
    levels = tuple(levels)
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise ValueError(f"unknown difficulty level(s) {bad or levels}; valid levels are {list(LEVELS)}")
    return levels


def split_range(split: str) -> SeedRange:
    """The seed range of ``split``; ValueError naming the valid splits otherwise."""
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; valid splits are {list(SPLITS)}") from None
