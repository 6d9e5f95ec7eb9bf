"""Benchmark of the mentor–mentee matching (optimal vs greedy).

Run from the repository root::

    .venv/bin/python -m bench.matching [--mentees 2000] [--mentors 1000] [--seed 20240901]
    .venv/bin/python bench/matching.py

Exit status is 0 when the optimal assignment is at least as good as the
greedy one and runs within the time target, 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # executed as `python bench/matching.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.services.matching import (  # noqa: E402
    MatchWeights,
    MenteeNeed,
    MentorOffer,
    greedy_assignment,
    optimal_assignment,
    total_score,
)
from storage.taxonomy import DeficitGroup, OrgKind, SubjectArea  # noqa: E402

TARGET_SECONDS = 3.0
N_SCHOOLS = 40
SUBJECTS = [
    s.value for s in SubjectArea if s not in (SubjectArea.PRESCHOOL, SubjectArea.ADDITIONAL, SubjectArea.OTHER)
]  # 8 school subject areas + preschool + additional = 10 in total
GROUPS = [g.value for g in DeficitGroup]


def generate(
    n_mentees: int, n_mentors: int, seed: int
) -> tuple[list[MenteeNeed], list[MentorOffer], frozenset[tuple[int, int]]]:
    """A random municipality: ~40 organisations, ~10 subject areas, 50% network mentors."""
    rng = random.Random(seed)
    kinds = [OrgKind.SCHOOL.value] * 28 + [OrgKind.PRESCHOOL.value] * 8 + [OrgKind.ADDITIONAL.value] * 4
    org_kind = {org: kinds[org % len(kinds)] for org in range(1, N_SCHOOLS + 1)}

    def subject_for(kind: str) -> str | None:
        if kind == OrgKind.PRESCHOOL.value:
            return SubjectArea.PRESCHOOL.value
        if kind == OrgKind.ADDITIONAL.value:
            return SubjectArea.ADDITIONAL.value
        return rng.choice(SUBJECTS) if rng.random() > 0.03 else None

    mentees = []
    for i in range(n_mentees):
        org = rng.randint(1, N_SCHOOLS)
        deficits = frozenset(g for g in GROUPS if rng.random() < 0.3) or frozenset([rng.choice(GROUPS)])
        mentees.append(MenteeNeed(100_000 + i, org, org_kind[org], subject_for(org_kind[org]), deficits))
    mentors = []
    for j in range(n_mentors):
        org = rng.randint(1, N_SCHOOLS)
        capacity = rng.randint(1, 3)
        current = 0 if rng.random() < 0.7 else rng.randint(0, capacity)
        strengths = frozenset(rng.sample(GROUPS, rng.randint(1, 3)))
        mentors.append(
            MentorOffer(
                200_000 + j, org, org_kind[org], subject_for(org_kind[org]), strengths,
                capacity, current, rng.random() < 0.5,
            )
        )
    # A few ended/declined pairs.
    forbidden = frozenset(
        (rng.choice(mentees).id, rng.choice(mentors).id) for _ in range(n_mentees // 10)
    ) if mentees and mentors else frozenset()
    return mentees, mentors, forbidden


def _timed(fn, *args, repeat: int = 1):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mentees", type=int, default=2000)
    parser.add_argument("--mentors", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20240901)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs for the optimal algorithm")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    mentees, mentors, forbidden = generate(args.mentees, args.mentors, args.seed)
    gen_time = time.perf_counter() - t0
    weights = MatchWeights()
    slots = sum(m.free_slots for m in mentors)
    print(f"data: {len(mentees)} mentees, {len(mentors)} mentors, {slots} free slots, "
          f"{len(forbidden)} forbidden pairs, seed {args.seed} (generated in {gen_time:.2f} s)")

    opt_time, optimal = _timed(optimal_assignment, mentees, mentors, weights, forbidden, repeat=args.repeat)
    greedy_time, greedy = _timed(greedy_assignment, mentees, mentors, weights, forbidden)
    opt_total, greedy_total = total_score(optimal), total_score(greedy)

    print(f"optimal: {opt_time:.3f} s (best of {args.repeat}), total score {opt_total}, "
          f"matched {len(optimal)} mentees")
    print(f"greedy:  {greedy_time:.3f} s, total score {greedy_total}, matched {len(greedy)} mentees")
    ratio = opt_time / greedy_time if greedy_time > 0 else float("inf")
    print(f"time ratio optimal/greedy: {ratio:.2f}")
    gain = (opt_total - greedy_total) / greedy_total * 100 if greedy_total else 0.0
    print(f"score gain of optimal over greedy: {opt_total - greedy_total:+d} ({gain:+.2f} %)")

    ok_quality = opt_total >= greedy_total
    ok_time = opt_time < TARGET_SECONDS
    print(f"optimal >= greedy: {'PASS' if ok_quality else 'FAIL'}")
    print(f"optimal under {TARGET_SECONDS:.0f} s: {'PASS' if ok_time else 'FAIL'}")
    assert ok_quality, "optimal assignment scored below greedy"
    return 0 if ok_time else 1


if __name__ == "__main__":
    sys.exit(main())
