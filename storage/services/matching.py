"""Mentor–mentee matching for a whole municipality (pure: no database, no I/O).

The module proposes mentor–mentee pairs that maximise the total score over all
mentees at once, never exceeding a mentor's capacity. It returns reason CODES
(see the ``REASON_*`` constants) which the dialogs layer renders into text.

Scoring of one pair (weights come from :class:`MatchWeights`)
-------------------------------------------------------------
* ``same_school`` (+4) when both belong to the same organisation; otherwise the
  pair is a *network* pair, allowed only when ``mentor.accepts_network`` is
  true (else the pair is ineligible). An unknown organisation (``None``) never
  equals anything, so such a mentee can only get a network mentor.
* ``same_subject`` (+3) when the subject areas are equal (``None`` never equal).
* ``per_deficit`` (+1) for every deficit group of the mentee that is among the
  mentor's strengths, at most ``max_deficits`` (3) counted.
* ``same_kind`` (+1) when the organisation kinds are equal (``None`` never equal).
* ``per_existing_mentee`` (-1) for every mentee the mentor already has. The
  penalty also applies to mentees assigned in the same run: the k-th new
  mentee (k = 1, 2, ...) of a mentor with ``e`` existing mentees costs
  ``per_existing_mentee * (e + k - 1)``. This spreads the load over mentors.

Eligibility and ``min_score``
-----------------------------
A pair is *allowed* unless the network rule or the caller's ``forbidden`` set
(pairs that already ended or were declined, private exclusions either way)
rules it out. An allowed pair is *proposed* only if its own score, including
the load penalty of the capacity slot it takes, is ``>= min_score`` (default
1) and ``>= 0``. Leaving a mentee unmatched contributes 0, so the optimum never
forces anybody into a negative pair; with ``min_score <= 0`` zero-score pairs
may be proposed. A mentee whose every allowed pair scores below the threshold
stays unmatched (the caller may then escalate to the coordinator).

Optimality
----------
:func:`optimal_assignment` maximises, lexicographically, (1) the total score of
the proposed pairs and (2) the number of matched mentees. It is solved exactly
as a rectangular assignment problem (``scipy.optimize.linear_sum_assignment``)
between mentees and mentor *capacity slots*: slot k of a mentor carries the
pair's base score plus the load penalty for k. Because the penalty is
non-increasing in k, an optimal solution fills every mentor's slots from the
first one. Non-edges get value 0 and edges ``score * (n + 1) + 1 > 0``, so a
full rectangular assignment with the zero entries dropped is exactly a maximum
matching (no dummy columns are needed) and ties prefer more matched mentees.
Weights are integers (non-integer weights work but the tie-break is then only
approximate).

:func:`greedy_assignment` is the baseline: it repeatedly takes the remaining
pair with the highest current score (ties: earlier mentee, then earlier mentor
in input order), updating mentors' load penalties as it goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from storage.taxonomy import DeficitGroup

__all__ = [
    "DEFAULT_WEIGHTS",
    "LOAD_PREFIX",
    "DEFICIT_PREFIX",
    "REASON_NETWORK",
    "REASON_SAME_KIND",
    "REASON_SAME_SCHOOL",
    "REASON_SAME_SUBJECT",
    "MatchWeights",
    "MenteeNeed",
    "MentorOffer",
    "Proposal",
    "greedy_assignment",
    "next_best_mentor",
    "optimal_assignment",
    "score_pair",
    "total_score",
]

# Reason codes (rendered by the dialogs layer).
REASON_SAME_SCHOOL = "same_school"
REASON_NETWORK = "network"          # different organisation, mentor accepts network mentoring
REASON_SAME_SUBJECT = "same_subject"
REASON_SAME_KIND = "same_kind"
DEFICIT_PREFIX = "deficit:"         # followed by a DeficitGroup code, e.g. "deficit:ict"
LOAD_PREFIX = "load:"               # followed by the mentor's mentee count before this pair

_DEFICIT_ORDER = {g.value: i for i, g in enumerate(DeficitGroup)}


def _deficit_key(code: str) -> tuple[int, str]:
    return (_DEFICIT_ORDER.get(code, len(_DEFICIT_ORDER)), code)


@dataclass(frozen=True)
class MenteeNeed:
    """A teacher looking for a mentor."""

    id: int
    organisation_id: int | None
    org_kind: str | None
    subject_area: str | None
    deficit_groups: frozenset[str]


@dataclass(frozen=True)
class MentorOffer:
    """A mentor and how many mentees they can still take."""

    id: int
    organisation_id: int | None
    org_kind: str | None
    subject_area: str | None
    strengths: frozenset[str]
    capacity: int
    current_mentees: int
    accepts_network: bool

    def __post_init__(self) -> None:
        if self.capacity < 0 or self.current_mentees < 0:
            raise ValueError("capacity and current_mentees must be non-negative")

    @property
    def free_slots(self) -> int:
        """Mentees this mentor can still take (0 when over capacity)."""
        return max(0, self.capacity - self.current_mentees)


@dataclass(frozen=True)
class MatchWeights:
    """Scoring settings; see the module docstring."""

    same_school: int = 4
    same_subject: int = 3
    per_deficit: int = 1
    max_deficits: int = 3
    same_kind: int = 1
    per_existing_mentee: int = -1
    min_score: int = 1

    def __post_init__(self) -> None:
        if self.per_existing_mentee > 0:
            raise ValueError("per_existing_mentee must be <= 0 (load can only cost)")
        if self.max_deficits < 0:
            raise ValueError("max_deficits must be >= 0")


@dataclass(frozen=True)
class Proposal:
    """A proposed pair, its score (load penalty included) and reason codes."""

    mentee_id: int
    mentor_id: int
    score: int
    reasons: tuple[str, ...]


DEFAULT_WEIGHTS = MatchWeights()


def _same_org(mentee: MenteeNeed, mentor: MentorOffer) -> bool:
    return mentee.organisation_id is not None and mentee.organisation_id == mentor.organisation_id


def score_pair(
    mentee: MenteeNeed,
    mentor: MentorOffer,
    weights: MatchWeights = DEFAULT_WEIGHTS,
    *,
    extra_load: int = 0,
) -> tuple[int, tuple[str, ...]] | None:
    """Score one pair; ``None`` when the network rule forbids it.

    ``extra_load`` is the number of mentees already given to this mentor in the
    current run (on top of ``mentor.current_mentees``). Capacity, ``forbidden``
    and ``min_score`` are the callers' business.

    Reasons, in this order: ``same_school`` or ``network``, ``same_subject``,
    ``deficit:<group>`` for each counted group (taxonomy order), ``same_kind``,
    ``load:<n>`` when the mentor already has n > 0 mentees.
    """
    same_org = _same_org(mentee, mentor)
    if not same_org and not mentor.accepts_network:
        return None
    score = 0
    reasons: list[str] = []
    if same_org:
        score += weights.same_school
        reasons.append(REASON_SAME_SCHOOL)
    else:
        reasons.append(REASON_NETWORK)
    if mentee.subject_area is not None and mentee.subject_area == mentor.subject_area:
        score += weights.same_subject
        reasons.append(REASON_SAME_SUBJECT)
    common = sorted(mentee.deficit_groups & mentor.strengths, key=_deficit_key)
    counted = common[: weights.max_deficits]
    score += weights.per_deficit * len(counted)
    reasons.extend(DEFICIT_PREFIX + g for g in counted)
    if mentee.org_kind is not None and mentee.org_kind == mentor.org_kind:
        score += weights.same_kind
        reasons.append(REASON_SAME_KIND)
    load = mentor.current_mentees + extra_load
    if load > 0:
        score += weights.per_existing_mentee * load
        reasons.append(f"{LOAD_PREFIX}{load}")
    return score, tuple(reasons)


def total_score(proposals: Iterable[Proposal]) -> int:
    """Sum of the proposals' scores."""
    return sum(p.score for p in proposals)


# --------------------------------------------------------------------------- #
# Vectorised preparation shared by the optimal and the greedy algorithms.
# --------------------------------------------------------------------------- #


def _threshold(weights: MatchWeights) -> int:
    return max(weights.min_score, 0)


def _check_unique(items: Sequence[MenteeNeed] | Sequence[MentorOffer], what: str) -> None:
    ids = [x.id for x in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate {what} ids")


def _codes(a_values: Sequence[object], b_values: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes such that a_code == b_code iff values are equal and not None."""
    mapping: dict[object, int] = {}
    a = np.fromiter(
        (-1 if v is None else mapping.setdefault(v, len(mapping)) for v in a_values),
        dtype=np.int64,
        count=len(a_values),
    )
    b = np.fromiter(
        (-2 if v is None else mapping.setdefault(v, len(mapping)) for v in b_values),
        dtype=np.int64,
        count=len(b_values),
    )
    return a, b


@dataclass
class _Prepared:
    mentees: list[MenteeNeed]   # rows: mentees with at least one usable pair
    mentors: list[MentorOffer]  # columns: mentors with a free slot and a usable pair
    score0: np.ndarray          # (rows, cols) score of the pair at the mentor's next slot
    usable: np.ndarray          # (rows, cols) bool: allowed and score0 >= threshold
    free: np.ndarray            # (cols,) free slots


def _prepare(
    mentees: Sequence[MenteeNeed],
    mentors: Sequence[MentorOffer],
    weights: MatchWeights,
    forbidden: frozenset[tuple[int, int]],
) -> _Prepared:
    _check_unique(mentees, "mentee")
    _check_unique(mentors, "mentor")
    mentees = list(mentees)
    mentors = [m for m in mentors if m.free_slots > 0]
    n, m = len(mentees), len(mentors)
    if n == 0 or m == 0:
        empty = np.zeros((0, 0))
        return _Prepared([], [], empty, empty.astype(bool), np.zeros(0, dtype=np.int64))

    org_a, org_b = _codes([x.organisation_id for x in mentees], [y.organisation_id for y in mentors])
    sub_a, sub_b = _codes([x.subject_area for x in mentees], [y.subject_area for y in mentors])
    kind_a, kind_b = _codes([x.org_kind for x in mentees], [y.org_kind for y in mentors])

    same_org = org_a[:, None] == org_b[None, :]
    accepts = np.fromiter((y.accepts_network for y in mentors), dtype=bool, count=m)
    allowed = same_org | accepts[None, :]

    if forbidden:
        row_of = {x.id: i for i, x in enumerate(mentees)}
        col_of = {y.id: j for j, y in enumerate(mentors)}
        for mentee_id, mentor_id in forbidden:
            i = row_of.get(mentee_id)
            j = col_of.get(mentor_id)
            if i is not None and j is not None:
                allowed[i, j] = False

    # Deficit overlap via a small matrix product over the groups present.
    groups = sorted(
        set().union(*(x.deficit_groups for x in mentees)) & set().union(*(y.strengths for y in mentors))
    )
    score = same_org * weights.same_school
    score = score + (sub_a[:, None] == sub_b[None, :]) * weights.same_subject
    score = score + (kind_a[:, None] == kind_b[None, :]) * weights.same_kind
    if groups and weights.max_deficits > 0 and weights.per_deficit != 0:
        gi = {g: k for k, g in enumerate(groups)}
        need = np.zeros((n, len(groups)), dtype=np.float32)
        for i, x in enumerate(mentees):
            for g in x.deficit_groups:
                k = gi.get(g)
                if k is not None:
                    need[i, k] = 1.0
        strong = np.zeros((m, len(groups)), dtype=np.float32)
        for j, y in enumerate(mentors):
            for g in y.strengths:
                k = gi.get(g)
                if k is not None:
                    strong[j, k] = 1.0
        overlap = np.rint(need @ strong.T).astype(np.int64)
        np.minimum(overlap, weights.max_deficits, out=overlap)
        score = score + overlap * weights.per_deficit
    current = np.fromiter((y.current_mentees for y in mentors), dtype=np.int64, count=m)
    score = score + (current * weights.per_existing_mentee)[None, :]

    usable = allowed & (score >= _threshold(weights))
    rows = np.flatnonzero(usable.any(axis=1))
    cols = np.flatnonzero(usable.any(axis=0))
    if rows.size < n:
        usable = usable[rows]
        score = score[rows]
        mentees = [mentees[i] for i in rows]
    if cols.size < m:
        usable = usable[:, cols]
        score = score[:, cols]
        mentors = [mentors[j] for j in cols]
    free = np.fromiter((y.free_slots for y in mentors), dtype=np.int64, count=len(mentors))
    return _Prepared(mentees, mentors, score, usable, free)


def _proposal(mentee: MenteeNeed, mentor: MentorOffer, weights: MatchWeights, extra_load: int) -> Proposal:
    scored = score_pair(mentee, mentor, weights, extra_load=extra_load)
    assert scored is not None  # eligibility was checked by the caller
    return Proposal(mentee.id, mentor.id, scored[0], scored[1])


def _ordered(proposals: list[Proposal], mentees: Sequence[MenteeNeed]) -> list[Proposal]:
    order = {x.id: i for i, x in enumerate(mentees)}
    return sorted(proposals, key=lambda p: order[p.mentee_id])


# --------------------------------------------------------------------------- #
# Public algorithms
# --------------------------------------------------------------------------- #


def optimal_assignment(
    mentees: Sequence[MenteeNeed],
    mentors: Sequence[MentorOffer],
    weights: MatchWeights = DEFAULT_WEIGHTS,
    forbidden: frozenset[tuple[int, int]] = frozenset(),
) -> list[Proposal]:
    """Pairs with the maximum total score (then the most matched mentees).

    ``forbidden`` holds ``(mentee_id, mentor_id)`` pairs that must not be
    proposed. Mentees that get no pair are simply absent from the result;
    proposals come in the mentees' input order.
    """
    prep = _prepare(mentees, mentors, weights, forbidden)
    n = len(prep.mentees)
    if n == 0:
        return []
    thr = _threshold(weights)
    w = weights.per_existing_mentee

    # How many slots of each mentor could ever be used: bounded by the free
    # capacity, the number of candidate mentees and (for w < 0) the best score.
    candidates = prep.usable.sum(axis=0)
    slots = np.minimum(prep.free, candidates)
    if w < 0:
        best = np.where(prep.usable, prep.score0, thr).max(axis=0)
        slots = np.minimum(slots, (best - thr) // (-w) + 1)
    slots = np.minimum(slots, n)
    col_mentor = np.repeat(np.arange(len(prep.mentors)), slots)
    col_slot = np.arange(col_mentor.size) - np.repeat(np.cumsum(slots) - slots, slots)

    score = prep.score0[:, col_mentor] + w * col_slot[None, :]
    edge = prep.usable[:, col_mentor] & (score >= thr)
    big = n + 1
    value = np.where(edge, score.astype(np.float64) * big + 1.0, 0.0)
    del score, edge

    rows, cols = linear_sum_assignment(value, maximize=True)
    keep = value[rows, cols] > 0
    rows, cols = rows[keep], cols[keep]

    # Compact each mentor's used slots to 0, 1, 2, ... (only raises scores as
    # w <= 0; an optimal solution already uses a prefix when w < 0).
    order = np.lexsort((col_slot[cols], col_mentor[cols]))
    proposals: list[Proposal] = []
    prev_mentor, rank = -1, 0
    for k in order:
        j = int(col_mentor[cols[k]])
        rank = rank + 1 if j == prev_mentor else 0
        prev_mentor = j
        proposals.append(_proposal(prep.mentees[int(rows[k])], prep.mentors[j], weights, rank))
    return _ordered(proposals, mentees)


def greedy_assignment(
    mentees: Sequence[MenteeNeed],
    mentors: Sequence[MentorOffer],
    weights: MatchWeights = DEFAULT_WEIGHTS,
    forbidden: frozenset[tuple[int, int]] = frozenset(),
) -> list[Proposal]:
    """Baseline: repeatedly take the best remaining pair.

    The current score of a pair includes the mentor's load so far (existing
    plus assigned in this run). Ties go to the earlier mentee, then the earlier
    mentor in input order. Same eligibility and ``min_score`` rules as
    :func:`optimal_assignment`.
    """
    prep = _prepare(mentees, mentors, weights, forbidden)
    n = len(prep.mentees)
    if n == 0:
        return []
    thr = _threshold(weights)
    w = weights.per_existing_mentee
    sentinel = np.iinfo(np.int64).min // 4
    cur = np.where(prep.usable, prep.score0, sentinel).astype(np.int64)
    row_max = cur.max(axis=1)
    row_arg = cur.argmax(axis=1)
    load = np.zeros(len(prep.mentors), dtype=np.int64)
    done_row = sentinel * 2  # below anything in `cur`
    proposals: list[Proposal] = []
    while True:
        i = int(row_max.argmax())
        if row_max[i] < thr:
            break
        j = int(row_arg[i])
        proposals.append(_proposal(prep.mentees[i], prep.mentors[j], weights, int(load[j])))
        row_max[i] = done_row
        load[j] += 1
        if load[j] >= prep.free[j]:
            cur[:, j] = sentinel
        elif w != 0:
            cur[:, j] += w
        else:
            continue
        affected = np.flatnonzero((row_arg == j) & (row_max != done_row))
        if affected.size:
            sub = cur[affected]
            row_max[affected] = sub.max(axis=1)
            row_arg[affected] = sub.argmax(axis=1)
    return _ordered(proposals, mentees)


def next_best_mentor(
    mentee: MenteeNeed,
    mentors: Sequence[MentorOffer],
    weights: MatchWeights = DEFAULT_WEIGHTS,
    forbidden: frozenset[tuple[int, int]] = frozenset(),
    load: Mapping[int, int] | None = None,
) -> Proposal | None:
    """Best single mentor for ``mentee`` (e.g. after a mentor declined).

    ``forbidden`` should already contain the declined pair. ``load`` maps a
    mentor id to the mentees given to that mentor in the current run (on top of
    ``current_mentees``); it counts against capacity and in the load penalty.
    Ties: higher score, then the less loaded mentor, then input order.
    Returns ``None`` when no pair reaches ``min_score``.
    """
    load = load or {}
    thr = _threshold(weights)
    best: tuple[tuple[int, int], Proposal] | None = None
    for mentor in mentors:
        extra = load.get(mentor.id, 0)
        if extra >= mentor.free_slots or (mentee.id, mentor.id) in forbidden:
            continue
        scored = score_pair(mentee, mentor, weights, extra_load=extra)
        if scored is None or scored[0] < thr:
            continue
        key = (scored[0], -(mentor.current_mentees + extra))
        if best is None or key > best[0]:
            best = (key, Proposal(mentee.id, mentor.id, scored[0], scored[1]))
    return None if best is None else best[1]
