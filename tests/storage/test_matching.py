"""Tests of the mentor–mentee matching (storage/services/matching.py)."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.services.matching import (
    MatchWeights,
    MenteeNeed,
    MentorOffer,
    Proposal,
    greedy_assignment,
    next_best_mentor,
    optimal_assignment,
    score_pair,
    total_score,
)

W = MatchWeights()


def mentee(id, org=1, kind="school", subject="math_it", deficits=()):
    return MenteeNeed(id, org, kind, subject, frozenset(deficits))


def mentor(id, org=1, kind="school", subject="math_it", strengths=(), capacity=1, current=0, network=False):
    return MentorOffer(id, org, kind, subject, frozenset(strengths), capacity, current, network)


def pairs(proposals):
    return {(p.mentee_id, p.mentor_id) for p in proposals}


# --------------------------------------------------------------------------- #
# Reference implementation used by the checks below (independent of the module)
# --------------------------------------------------------------------------- #

ORDER = ["subject", "methodical", "psychological", "communicative", "ict", "selforg"]


def ref_base(a: MenteeNeed, b: MentorOffer, w: MatchWeights) -> int | None:
    """Score without any load penalty; None if the network rule forbids the pair."""
    same_org = a.organisation_id is not None and a.organisation_id == b.organisation_id
    if not same_org and not b.accepts_network:
        return None
    s = w.same_school if same_org else 0
    s += w.same_subject if a.subject_area is not None and a.subject_area == b.subject_area else 0
    s += w.per_deficit * min(len(a.deficit_groups & b.strengths), w.max_deficits)
    s += w.same_kind if a.org_kind is not None and a.org_kind == b.org_kind else 0
    return s


def brute_force(mentees, mentors, w, forbidden):
    """Best (total score, matched count) over all assignments."""
    thr = max(w.min_score, 0)
    options = []
    for a in mentees:
        opts = [None]
        for j, b in enumerate(mentors):
            base = ref_base(a, b, w)
            if base is not None and (a.id, b.id) not in forbidden:
                opts.append((j, base))
        options.append(opts)
    best = (0, 0)
    for choice in itertools.product(*options):
        by_mentor = defaultdict(list)
        for c in choice:
            if c is not None:
                by_mentor[c[0]].append(c[1])
        total, ok = 0, True
        for j, bases in by_mentor.items():
            b = mentors[j]
            if len(bases) > max(0, b.capacity - b.current_mentees):
                ok = False
                break
            # The smallest base takes the cheapest slot: the most permissive order.
            for k, base in enumerate(sorted(bases)):
                s = base + w.per_existing_mentee * (b.current_mentees + k)
                if s < thr:
                    ok = False
                total += s
        if ok:
            best = max(best, (total, sum(len(v) for v in by_mentor.values())))
    return best


def check_valid(proposals, mentees, mentors, w, forbidden):
    """Structural invariants every algorithm's output must satisfy."""
    thr = max(w.min_score, 0)
    by_id_a = {a.id: a for a in mentees}
    by_id_b = {b.id: b for b in mentors}
    assert len({p.mentee_id for p in proposals}) == len(proposals), "a mentee matched twice"
    per_mentor: dict[int, list[Proposal]] = defaultdict(list)
    for p in proposals:
        a, b = by_id_a[p.mentee_id], by_id_b[p.mentor_id]
        assert (p.mentee_id, p.mentor_id) not in forbidden
        assert ref_base(a, b, w) is not None, "network rule violated"
        assert p.score >= thr
        per_mentor[b.id].append(p)
    for mid, props in per_mentor.items():
        b = by_id_b[mid]
        assert len(props) <= b.capacity - b.current_mentees, "capacity exceeded"
        # The mentor's new mentees take loads e, e+1, ..., each scored accordingly.
        loads = []
        for p in props:
            load = next((int(r.split(":")[1]) for r in p.reasons if r.startswith("load:")), 0)
            loads.append(load)
            assert score_pair(by_id_a[p.mentee_id], b, w, extra_load=load - b.current_mentees) == (
                p.score, p.reasons)
            assert p.score == ref_base(by_id_a[p.mentee_id], b, w) + w.per_existing_mentee * load
        assert sorted(loads) == list(range(b.current_mentees, b.current_mentees + len(props)))
    assert [p.mentee_id for p in proposals] == [a.id for a in mentees if a.id in {p.mentee_id for p in proposals}]


def random_instance(rng: random.Random, n: int, m: int, n_orgs: int = 5):
    subjects = ["math_it", "philology", "science", None]
    kinds = ["school", "preschool", None]
    mentees = [
        MenteeNeed(i, rng.choice([*range(n_orgs), None]), rng.choice(kinds), rng.choice(subjects),
                   frozenset(g for g in ORDER if rng.random() < 0.35))
        for i in range(n)
    ]
    mentors = []
    for j in range(m):
        cap = rng.randint(0, 3)
        mentors.append(MentorOffer(1000 + j, rng.choice([*range(n_orgs), None]), rng.choice(kinds),
                                   rng.choice(subjects), frozenset(rng.sample(ORDER, rng.randint(0, 3))),
                                   cap, rng.randint(0, cap), rng.random() < 0.5))
    forbidden = frozenset((rng.randrange(n), 1000 + rng.randrange(m)) for _ in range(n // 3))
    return mentees, mentors, forbidden


# --------------------------------------------------------------------------- #
# Scoring
# --------------------------------------------------------------------------- #


def test_score_pair_reasons_and_deficit_cap():
    a = mentee(1, deficits={"ict", "subject", "methodical", "psychological"})
    b = mentor(2, strengths={"ict", "subject", "methodical", "psychological"}, capacity=3, current=1)
    score, reasons = score_pair(a, b, W)
    assert score == 4 + 3 + 3 + 1 - 1
    assert reasons == (
        "same_school", "same_subject",
        "deficit:subject", "deficit:methodical", "deficit:psychological",
        "same_kind", "load:1",
    )
    assert score_pair(a, b, W, extra_load=2) == (score - 2, reasons[:-1] + ("load:3",))


def test_score_pair_network_rule():
    a = mentee(1, org=1, subject="philology", deficits={"ict"})
    closed = mentor(2, org=2, network=False, strengths={"ict"})
    open_ = mentor(3, org=2, network=True, strengths={"ict"})
    assert score_pair(a, closed, W) is None
    assert score_pair(a, open_, W) == (1 + 1, ("network", "deficit:ict", "same_kind"))
    # Unknown organisations are never "the same school".
    assert score_pair(mentee(4, org=None), mentor(5, org=None), W) is None
    assert score_pair(mentee(4, org=None), mentor(5, org=None, network=True), W)[1][0] == "network"


def test_weights_validation():
    with pytest.raises(ValueError):
        MatchWeights(per_existing_mentee=1)
    with pytest.raises(ValueError):
        MatchWeights(max_deficits=-1)
    with pytest.raises(ValueError):
        mentor(1, capacity=-1)


# --------------------------------------------------------------------------- #
# Assignment
# --------------------------------------------------------------------------- #


def greedy_trap():
    """Greedy gives A the network mentor X (7) and leaves B alone; optimum is 5 + 4."""
    a = mentee(1, org=3, subject="math_it", deficits={"methodical", "ict", "selforg"})
    b = mentee(2, org=2, subject="math_it")
    y = mentor(10, org=3, subject="philology", network=False)
    x = mentor(11, org=1, subject="math_it", strengths={"methodical", "ict", "selforg"}, network=True)
    return [a, b], [y, x]


def test_optimal_beats_greedy_on_known_case():
    mentees, mentors = greedy_trap()
    greedy = greedy_assignment(mentees, mentors, W)
    optimal = optimal_assignment(mentees, mentors, W)
    assert pairs(greedy) == {(1, 11)} and total_score(greedy) == 7
    assert pairs(optimal) == {(1, 10), (2, 11)} and total_score(optimal) == 9
    assert total_score(optimal) > total_score(greedy)
    assert {p.mentee_id: p.reasons for p in optimal} == {
        1: ("same_school", "same_kind"),
        2: ("network", "same_subject", "same_kind"),
    }


def test_load_spreading_equal_mentors():
    mentees = [mentee(1, deficits={"ict"}), mentee(2, deficits={"ict"})]
    mentors = [mentor(10, strengths={"ict"}, capacity=2), mentor(11, strengths={"ict"}, capacity=2)]
    for algo in (optimal_assignment, greedy_assignment):
        result = algo(mentees, mentors, W)
        assert len(result) == 2
        assert Counter(p.mentor_id for p in result) == {10: 1, 11: 1}
        assert all("load:1" not in p.reasons for p in result)


def test_existing_mentees_count_against_a_mentor():
    a = mentee(1)
    busy = mentor(10, capacity=3, current=1)
    idle = mentor(11, capacity=3, current=0)
    [p] = optimal_assignment([a], [busy, idle], W)
    assert p.mentor_id == 11 and p.score == 8
    [p] = optimal_assignment([a], [busy], W)
    assert p.score == 7 and p.reasons[-1] == "load:1"


def test_capacity_respected_and_slots_penalised():
    mentees = [mentee(i) for i in range(1, 6)]  # base 8 with the mentor
    only = mentor(10, capacity=3, current=1)
    result = optimal_assignment(mentees, [only], W)
    assert len(result) == 2  # capacity 3, one already taken
    assert sorted(p.score for p in result) == [6, 7]
    assert total_score(result) == 13


def test_mentor_without_free_slot_gets_nobody():
    full = mentor(10, capacity=2, current=2)
    over = mentor(11, capacity=1, current=3)
    assert optimal_assignment([mentee(1)], [full, over], W) == []
    assert greedy_assignment([mentee(1)], [full, over], W) == []


def test_min_score_leaves_mentee_unmatched():
    # Network pair with nothing in common: score 0.
    a = mentee(1, org=1, kind="preschool", subject="preschool")
    b = mentor(10, org=2, kind="school", subject="math_it", network=True)
    assert score_pair(a, b, W)[0] == 0
    assert optimal_assignment([a], [b], W) == []
    assert greedy_assignment([a], [b], W) == []
    relaxed = MatchWeights(min_score=0)
    assert pairs(optimal_assignment([a], [b], relaxed)) == {(1, 10)}
    assert pairs(greedy_assignment([a], [b], relaxed)) == {(1, 10)}
    # A negative pair is never forced, whatever min_score says.
    busy = mentor(11, org=2, kind="school", subject="math_it", network=True, capacity=5, current=2)
    assert optimal_assignment([a], [busy], MatchWeights(min_score=-10)) == []


def test_min_score_applies_per_slot():
    # Base 2 each (network pair: same kind + deficit ict), capacity 3:
    # slots score 2, 1, 0 -> only two mentees get this mentor.
    mentees = [mentee(i, org=1, subject=None, deficits={"ict"}) for i in range(1, 4)]
    b = mentor(10, org=2, subject=None, strengths={"ict"}, capacity=3, network=True)
    for algo in (optimal_assignment, greedy_assignment):
        result = algo(mentees, [b], W)
        assert sorted(p.score for p in result) == [1, 2]


def test_forbidden_pairs_never_proposed():
    a = mentee(1, deficits={"ict"})
    best = mentor(10, strengths={"ict"})
    other = mentor(11, subject="science")
    forbidden = frozenset({(1, 10)})
    for algo in (optimal_assignment, greedy_assignment):
        assert pairs(algo([a], [best, other], W)) == {(1, 10)}
        assert pairs(algo([a], [best, other], W, forbidden)) == {(1, 11)}
        assert algo([a], [best], W, forbidden) == []


def test_network_rule_in_assignment():
    a = mentee(1, org=1)
    closed = mentor(10, org=2, network=False)
    assert optimal_assignment([a], [closed], W) == []
    assert greedy_assignment([a], [closed], W) == []
    opened = mentor(10, org=2, network=True)
    [p] = optimal_assignment([a], [opened], W)
    assert p.reasons == ("network", "same_subject", "same_kind")


def test_empty_and_duplicates():
    assert optimal_assignment([], [mentor(1)], W) == []
    assert optimal_assignment([mentee(1)], [], W) == []
    assert greedy_assignment([], [], W) == []
    with pytest.raises(ValueError):
        optimal_assignment([mentee(1), mentee(1)], [mentor(2)], W)
    with pytest.raises(ValueError):
        greedy_assignment([mentee(1)], [mentor(2), mentor(2, capacity=0)], W)


def test_medium_random_instance_is_valid_and_optimal_wins():
    rng = random.Random(7)
    mentees, mentors, forbidden = random_instance(rng, 300, 150, n_orgs=12)
    opt = optimal_assignment(mentees, mentors, W, forbidden)
    greedy = greedy_assignment(mentees, mentors, W, forbidden)
    check_valid(opt, mentees, mentors, W, forbidden)
    check_valid(greedy, mentees, mentors, W, forbidden)
    assert total_score(opt) >= total_score(greedy)
    assert len(opt) > 0


# --------------------------------------------------------------------------- #
# next_best_mentor
# --------------------------------------------------------------------------- #


def test_next_best_mentor_skips_declined_and_full():
    a = mentee(1, deficits={"ict", "selforg"})
    first = mentor(10, strengths={"ict", "selforg"})   # 10
    second = mentor(11, strengths={"ict"})             # 9
    third = mentor(12, subject="science", capacity=2)  # 5
    mentors = [first, second, third]
    assert next_best_mentor(a, mentors, W).mentor_id == 10
    declined = frozenset({(1, 10)})
    p = next_best_mentor(a, mentors, W, declined, {})
    assert (p.mentor_id, p.score) == (11, 9)
    # Mentor 11 already got someone in this run: no capacity left.
    p = next_best_mentor(a, mentors, W, declined, {11: 1})
    assert (p.mentor_id, p.score, p.reasons[-1]) == (12, 5, "same_kind")
    p = next_best_mentor(a, mentors, W, declined, {11: 1, 12: 1})
    assert (p.mentor_id, p.score, p.reasons[-1]) == (12, 4, "load:1")
    assert next_best_mentor(a, mentors, W, declined, {11: 1, 12: 2}) is None


def test_next_best_mentor_respects_network_and_min_score():
    a = mentee(1, org=1, kind="preschool", subject="preschool")
    closed = mentor(10, org=2, network=False, strengths={"ict"})
    weak = mentor(11, org=2, network=True)  # score 0
    assert next_best_mentor(a, [closed, weak], W) is None
    assert next_best_mentor(a, [closed, weak], MatchWeights(min_score=0)).mentor_id == 11


def test_next_best_mentor_prefers_less_loaded_on_ties():
    a = mentee(1)
    busy = mentor(10, capacity=3, current=1)
    idle = mentor(11, capacity=3)
    flat = MatchWeights(per_existing_mentee=0)
    assert next_best_mentor(a, [busy, idle], flat).mentor_id == 11


# --------------------------------------------------------------------------- #
# Properties
# --------------------------------------------------------------------------- #

GROUPS = st.frozensets(st.sampled_from(["subject", "methodical", "ict", "selforg"]), max_size=4)
ORGS = st.sampled_from([1, 2, None])
KINDS = st.sampled_from(["school", "preschool", None])
SUBJECTS = st.sampled_from(["math_it", "philology", None])


@st.composite
def instances(draw):
    n = draw(st.integers(0, 4))
    m = draw(st.integers(1, 3))
    mentees = [MenteeNeed(i, draw(ORGS), draw(KINDS), draw(SUBJECTS), draw(GROUPS)) for i in range(n)]
    mentors = []
    for j in range(m):
        cap = draw(st.integers(0, 3))
        mentors.append(MentorOffer(10 + j, draw(ORGS), draw(KINDS), draw(SUBJECTS), draw(GROUPS),
                                   cap, draw(st.integers(0, 1)), draw(st.booleans())))
    all_pairs = [(a.id, b.id) for a in mentees for b in mentors]
    forbidden = frozenset(draw(st.lists(st.sampled_from(all_pairs), max_size=3))) if all_pairs else frozenset()
    weights = draw(st.sampled_from([
        W,
        MatchWeights(min_score=3),
        MatchWeights(min_score=0),
        MatchWeights(min_score=-2, per_existing_mentee=-2),
        MatchWeights(per_existing_mentee=0),
        MatchWeights(max_deficits=1, same_kind=0),
    ]))
    return mentees, mentors, forbidden, weights


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_optimal_matches_brute_force_and_beats_greedy(instance):
    mentees, mentors, forbidden, weights = instance
    opt = optimal_assignment(mentees, mentors, weights, forbidden)
    greedy = greedy_assignment(mentees, mentors, weights, forbidden)
    check_valid(opt, mentees, mentors, weights, forbidden)
    check_valid(greedy, mentees, mentors, weights, forbidden)
    assert (total_score(opt), len(opt)) == brute_force(mentees, mentors, weights, forbidden)
    assert total_score(opt) >= total_score(greedy)
    for a in mentees:
        nb = next_best_mentor(a, mentors, weights, forbidden)
        solo = optimal_assignment([a], mentors, weights, forbidden)
        assert (nb.score if nb else None) == (solo[0].score if solo else None)


def test_optimal_matches_brute_force_on_many_seeded_tiny_instances():
    """Deterministic complement of the property test: 400 random tiny instances."""
    rng = random.Random(2024)
    greedy_worse = 0
    for _ in range(400):
        mentees, mentors, forbidden = random_instance(rng, rng.randint(1, 4), rng.randint(1, 3), n_orgs=2)
        opt = optimal_assignment(mentees, mentors, W, forbidden)
        assert (total_score(opt), len(opt)) == brute_force(mentees, mentors, W, forbidden)
        greedy_total = total_score(greedy_assignment(mentees, mentors, W, forbidden))
        assert total_score(opt) >= greedy_total
        greedy_worse += total_score(opt) > greedy_total
    assert greedy_worse > 0  # the instances are hard enough to tell the two apart
