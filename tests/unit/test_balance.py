"""Member selection: distributions, tiers and states, consistent hashing, determinism."""

from __future__ import annotations

import collections
import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.l7.balance import (
    ALGORITHMS,
    Balancer,
    MemberState,
    _rendezvous,
    key_hash,
    make_balancer,
    member_seed,
)
from lbcore.l7.facts import RequestFacts

ROOT = Path(__file__).resolve().parents[2]


def members(*specs: str | tuple) -> list[MemberState]:
    """members("a", ("b", 3), ("c", 1, True)) -> MemberStates (name, weight, backup)."""
    out = []
    for spec in specs:
        if isinstance(spec, str):
            spec = (spec,)
        out.append(MemberState(*spec))
    return out


def names(balancer: Balancer, count: int, facts: RequestFacts | None = None, exclude=()) -> str:
    picked = []
    for _ in range(count):
        member = balancer.pick(facts, exclude)
        picked.append(member.name if member is not None else "-")
    return "".join(picked)


def src(ip: str) -> RequestFacts:
    return RequestFacts("GET", "/", [], client_ip=ip)


def key_facts(algorithm: str, i: int) -> RequestFacts:
    """A request whose balancing key (for ``algorithm``) is key number i."""
    if algorithm == "source":
        return RequestFacts("GET", "/", [], client_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    if algorithm == "uri":
        return RequestFacts("GET", f"/item/{i}")
    return RequestFacts("GET", "/", [("X-User", f"user-{i}")])


def make(algorithm: str, pool: list[MemberState], **kw) -> Balancer:
    if algorithm == "hdr":
        kw.setdefault("hash_header", "x-user")
    if algorithm == "random":
        kw.setdefault("rng", random.Random(7))
    return make_balancer(algorithm, pool, **kw)


# -- MemberState ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "up, admin, weight, available, reachable",
    [
        (True, "enabled", 1, True, True),
        (True, "enabled", 0, False, True),
        (True, "drain", 1, False, True),
        (True, "maint", 1, False, False),
        (False, "enabled", 1, False, False),
        (False, "drain", 1, False, False),
    ],
)
def test_member_state_flags(up, admin, weight, available, reachable):
    m = MemberState("w1", weight=weight, admin=admin, up=up)
    assert m.available is available
    assert m.reachable is reachable
    assert m.active == 0


@pytest.mark.parametrize("kw", [{"weight": -1}, {"weight": 257}, {"admin": "disabled"}])
def test_member_state_rejects_bad_values(kw):
    with pytest.raises(ValueError):
        MemberState("w1", **kw)


def test_member_admin_state_set_later_is_checked_and_taken_by_value():
    m = MemberState("w1", admin="maint")
    m.admin = "".join(["en", "abled"])  # equal to "enabled", another object (as parsed from a config)
    assert m.admin == "enabled" and m.available
    with pytest.raises(ValueError, match="admin state 'disabled'"):
        m.admin = "disabled"
    assert m.admin == "enabled"  # refused: the state is unchanged


def test_make_balancer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown balance algorithm"):
        make_balancer("first", members("a"))
    with pytest.raises(ValueError, match="hash_header"):
        make_balancer("hdr", members("a"))
    with pytest.raises(ValueError, match="duplicate"):
        make_balancer("roundrobin", members("a", "b", "a"))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_builds_and_reports_its_name(algorithm):
    pool = members("a", "b")
    balancer = make(algorithm, pool)
    assert isinstance(balancer, Balancer)
    assert balancer.algorithm == algorithm
    assert balancer.members == tuple(pool)


# -- states, tiers, exclude: every algorithm ----------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "change", [("up", False), ("admin", "drain"), ("admin", "maint"), ("weight", 0)]
)
def test_unavailable_members_take_no_new_traffic(algorithm, change):
    pool = members("a", "b", "c")
    balancer = make(algorithm, pool)
    setattr(pool[1], *change)
    balancer.update()
    picked = {balancer.pick(key_facts(algorithm, i)).name for i in range(300)}
    assert picked == {"a", "c"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_backup_only_when_no_primary_is_available_and_hands_back(algorithm):
    pool = members("a", "b", ("x", 1, True), ("y", 1, True))
    balancer = make(algorithm, pool)
    facts = [key_facts(algorithm, i) for i in range(200)]
    assert {balancer.pick(f).name for f in facts} == {"a", "b"}
    pool[0].up = False
    balancer.update()
    assert {balancer.pick(f).name for f in facts} == {"b"}
    pool[1].admin = "maint"
    balancer.update()
    assert {balancer.pick(f).name for f in facts} == {"x", "y"}
    pool[0].up = True
    balancer.update()
    assert {balancer.pick(f).name for f in facts} == {"a"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pick_returns_none_when_nothing_is_available(algorithm):
    assert make(algorithm, []).pick(key_facts(algorithm, 1)) is None
    pool = members("a", ("x", 1, True))
    balancer = make(algorithm, pool)
    pool[0].up = False
    pool[1].admin = "drain"
    balancer.update()
    assert balancer.pick(key_facts(algorithm, 1)) is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_exclude_skips_failed_members_then_falls_to_backups(algorithm):
    pool = members("a", "b", "c", ("x", 1, True))
    a, b, c, x = pool
    balancer = make(algorithm, pool)
    for i in range(100):
        facts = key_facts(algorithm, i)
        assert balancer.pick(facts, exclude=[a, b]) is c
        assert balancer.pick(facts, exclude={a}).name in "bc"
        assert balancer.pick(facts, exclude=(a, b, c)) is x
        assert balancer.pick(facts, exclude=pool) is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pick_never_returns_a_member_changed_without_update(algorithm):
    pool = members("a", "b")
    balancer = make(algorithm, pool)
    pool[0].up = False  # the engine forgot update(): pick must still not choose "a"
    for i in range(50):
        assert balancer.pick(key_facts(algorithm, i)) is pool[1]


def test_update_is_a_no_op_when_nothing_changed():
    pool = members(("a", 2), "b")
    balancer = make_balancer("roundrobin", pool)
    assert names(balancer, 2) == "ab"
    balancer.update()  # must not reset the cycle in progress
    assert names(balancer, 1) == "a"


# -- roundrobin --------------------------------------------------------------------------


def test_smooth_wrr_interleaves_instead_of_bursting():
    balancer = make_balancer("roundrobin", members(("a", 5), ("b", 1), ("c", 1)))
    cycle = names(balancer, 7)
    assert cycle == "aabacaa"  # nginx's documented sequence for 5,1,1
    assert names(balancer, 14) == cycle * 2


def test_roundrobin_equal_weights_rotates():
    balancer = make_balancer("roundrobin", members("a", "b", "c"))
    assert names(balancer, 9) == "abcabcabc"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=6))
def test_smooth_wrr_exact_per_cycle_and_never_far_from_ideal(weights):
    pool = [MemberState(f"m{i}", w) for i, w in enumerate(weights)]
    balancer = make_balancer("roundrobin", pool)
    total = sum(weights)
    counts = collections.Counter()
    for step in range(1, 2 * total + 1):
        counts[balancer.pick().name] += 1
        for i, w in enumerate(weights):
            # Every prefix stays within 2 picks of the ideal share: no bursts.
            assert abs(counts[f"m{i}"] - step * w / total) <= 2
        if step % total == 0:
            assert all(counts[f"m{i}"] == w * step // total for i, w in enumerate(weights))


def test_roundrobin_exclude_keeps_proportions_of_the_rest():
    pool = members(("a", 2), ("b", 1), ("c", 1))
    balancer = make_balancer("roundrobin", pool)
    counts = collections.Counter(names(balancer, 300, exclude=[pool[2]]))
    assert counts == {"a": 200, "b": 100}


def test_roundrobin_with_one_primary_excluded_goes_to_a_backup():
    pool = members("a", "b", "c")
    pool[1].backup = pool[2].backup = True
    balancer = make_balancer("roundrobin", pool)
    assert names(balancer, 3) == "aaa"
    assert names(balancer, 4, exclude=[pool[0]]) == "bcbc"
    assert balancer.pick(exclude=pool) is None


def test_roundrobin_weight_change_applies_after_update():
    pool = members("a", "b")
    balancer = make_balancer("roundrobin", pool)
    pool[0].weight = 3
    balancer.update()
    assert collections.Counter(names(balancer, 40)) == {"a": 30, "b": 10}


# -- leastconn ----------------------------------------------------------------------------


def test_leastconn_follows_active_counts():
    pool = members("a", "b", "c")
    balancer = make_balancer("leastconn", pool)
    pool[0].active, pool[1].active, pool[2].active = 5, 1, 3
    assert balancer.pick() is pool[1]
    pool[1].active = 7
    assert balancer.pick() is pool[2]
    pool[2].active = 9
    assert balancer.pick() is pool[0]


def test_leastconn_ties_go_round_robin():
    balancer = make_balancer("leastconn", members("a", "b", "c"))
    assert names(balancer, 9) == "abcabcabc"


def test_leastconn_weights_scale_the_load():
    pool = members(("a", 3), ("b", 1))
    balancer = make_balancer("leastconn", pool)
    # Long-lived connections: the engine counts each pick as in flight.
    for _ in range(40):
        balancer.pick().active += 1
    assert (pool[0].active, pool[1].active) == (30, 10)


def test_leastconn_with_releases_always_picks_a_least_loaded_member():
    pool = members("a", "b", "c", "d")
    balancer = make_balancer("leastconn", pool)
    rng = random.Random(3)
    in_flight: list[MemberState] = []
    picks = collections.Counter()
    for _ in range(2000):
        member = balancer.pick()
        assert member.active == min(m.active for m in pool)
        picks[member.name] += 1
        member.active += 1
        in_flight.append(member)
        if len(in_flight) > 8:
            done = in_flight.pop(rng.randrange(len(in_flight)))
            done.active -= 1
    assert all(400 < count < 600 for count in picks.values())


# -- random (power of two choices) -------------------------------------------------------


def test_random_two_choices_prefers_the_less_loaded():
    pool = members("a", "b", "c")
    balancer = make_balancer("random", pool, rng=random.Random(1))
    pool[0].active = 10
    # Two distinct draws always include one of b, c, which beat a.
    assert "a" not in names(balancer, 500)
    pool[1].active = 10
    counts = collections.Counter(names(balancer, 3000))
    assert counts["c"] > counts["a"] + counts["b"]  # c wins every draw it is in: ~2/3


def test_random_two_choices_balances_concurrent_load():
    pool = members(*"abcdefgh")
    balancer = make_balancer("random", pool, rng=random.Random(2))
    for _ in range(800):
        balancer.pick().active += 1
    loads = [m.active for m in pool]
    assert max(loads) - min(loads) <= 8  # one random choice spreads them over ~30


def test_random_idle_shares_follow_weights():
    pool = members(("a", 1), ("b", 3))
    balancer = make_balancer("random", pool, rng=random.Random(3))
    counts = collections.Counter(names(balancer, 8000))
    assert 0.70 < counts["b"] / 8000 < 0.80


def test_random_single_candidate_and_reproducible_with_seed():
    pool = members("a", "b", "c")
    assert names(make_balancer("random", pool[:1]), 5) == "aaaaa"
    one = make_balancer("random", pool, rng=random.Random(9))
    two = make_balancer("random", pool, rng=random.Random(9))
    assert names(one, 100) == names(two, 100)


# -- consistent hashing ---------------------------------------------------------------------

HASHED = ("source", "uri", "hdr")


def assignment(balancer: Balancer, algorithm: str, keys: range) -> dict[int, str]:
    return {i: balancer.pick(key_facts(algorithm, i)).name for i in keys}


pool_sizes = st.integers(min_value=3, max_value=10)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(HASHED), pool_sizes, st.data())
def test_removing_a_member_moves_only_its_keys(algorithm, n, data):
    keys = range(1500)
    pool = [MemberState(f"m{i}") for i in range(n)]
    before = assignment(make(algorithm, pool), algorithm, keys)
    gone = data.draw(st.integers(0, n - 1))
    rest = pool[:gone] + pool[gone + 1 :]
    after = assignment(make(algorithm, rest), algorithm, keys)
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == f"m{gone}" for k in moved)  # never between survivors
    assert len(moved) / len(keys) < 2 / n + 0.03


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(HASHED), pool_sizes)
def test_adding_a_member_moves_only_keys_to_it(algorithm, n):
    keys = range(1500)
    pool = [MemberState(f"m{i}") for i in range(n)]
    before = assignment(make(algorithm, pool), algorithm, keys)
    after = assignment(make(algorithm, pool + [MemberState("new")]), algorithm, keys)
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "new" for k in moved)
    assert len(moved) / len(keys) < 2 / (n + 1) + 0.03


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(HASHED), pool_sizes, st.data())
def test_member_down_moves_only_its_keys_and_they_come_back(algorithm, n, data):
    keys = range(1500)
    pool = [MemberState(f"m{i}", data.draw(st.integers(1, 4))) for i in range(n)]
    balancer = make(algorithm, pool)
    before = assignment(balancer, algorithm, keys)
    victim = pool[data.draw(st.integers(0, n - 1))]
    victim.up = False
    balancer.update()
    after = assignment(balancer, algorithm, keys)
    assert all(before[k] == victim.name for k in keys if before[k] != after[k])
    assert victim.name not in after.values()
    # The same keys go where an exclude (redispatch) would send them.
    victim.up = True
    balancer.update()
    assert assignment(balancer, algorithm, keys) == before
    excluded = {k: balancer.pick(key_facts(algorithm, k), exclude=[victim]).name for k in keys}
    assert excluded == after


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(HASHED), pool_sizes, st.data())
def test_reweighting_a_member_moves_keys_only_to_or_from_it(algorithm, n, data):
    keys = range(1200)
    pool = [MemberState(f"m{i}", data.draw(st.integers(1, 5))) for i in range(n)]
    balancer = make(algorithm, pool)
    before = assignment(balancer, algorithm, keys)
    member = pool[data.draw(st.integers(0, n - 1))]
    member.weight = data.draw(st.integers(1, 10).filter(lambda w: w != member.weight))
    balancer.update()
    after = assignment(balancer, algorithm, keys)
    assert all(member.name in (before[k], after[k]) for k in keys if before[k] != after[k])


def test_weighted_shares_are_proportional():
    weights = {"a": 1, "b": 2, "c": 3, "d": 4}
    pool = [MemberState(name, w) for name, w in weights.items()]
    balancer = make_balancer("uri", pool)
    total_keys = 20000
    counts = collections.Counter(assignment(balancer, "uri", range(total_keys)).values())
    for name, w in weights.items():
        expected = total_keys * w / 10
        assert abs(counts[name] - expected) < 0.08 * expected


def test_equal_weight_shares_are_even():
    pool = [MemberState(f"m{i}", 7) for i in range(5)]
    counts = collections.Counter(assignment(make_balancer("source", pool), "source", range(20000)).values())
    assert all(abs(c - 4000) < 320 for c in counts.values())


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20), st.integers(1, 256))
def test_equal_weight_fast_path_matches_the_weighted_formula(keys, weight):
    pool = [MemberState(f"m{i}", weight) for i in range(6)]
    seeds = [member_seed(m.name) for m in pool]
    weights = [weight] * len(pool)
    for key in keys:
        assert _rendezvous(key, pool, seeds, weights, True, ()) is _rendezvous(
            key, pool, seeds, weights, False, ()
        )


def test_backups_hash_among_backups_only():
    pool = members("a", "b", ("x", 1, True), ("y", 1, True))
    balancer = make_balancer("source", pool)
    pool[0].up = pool[1].up = False
    balancer.update()
    spread = collections.Counter(balancer.pick(src(f"192.0.2.{i}")).name for i in range(200))
    assert set(spread) == {"x", "y"}
    # The same client keeps the same backup.
    for i in range(50):
        assert balancer.pick(src(f"192.0.2.{i}")) is balancer.pick(src(f"192.0.2.{i}"))


def test_uri_hash_ignores_the_query_string():
    pool = members(*"abcdefgh")
    balancer = make_balancer("uri", pool)
    for i in range(50):
        plain = balancer.pick(RequestFacts("GET", f"/img/{i}.png"))
        for query in ("?v=1", "?v=2&x=y", "?"):
            assert balancer.pick(RequestFacts("GET", f"/img/{i}.png{query}")) is plain


def test_source_hash_treats_v4_mapped_v6_as_v4():
    balancer = make_balancer("source", members(*"abcdefgh"))
    for i in range(50):
        assert balancer.pick(src(f"::ffff:198.51.100.{i}")) is balancer.pick(src(f"198.51.100.{i}"))


def test_hdr_hash_header_name_is_case_insensitive():
    pool = members(*"abcdefgh")
    balancer = make_balancer("hdr", pool, hash_header="X-User")
    for i in range(50):
        lower = RequestFacts("GET", "/", [("x-user", f"u{i}")])
        upper = RequestFacts("GET", "/", [("X-USER", f"u{i}")])
        assert balancer.pick(lower) is balancer.pick(upper)


@pytest.mark.parametrize(
    "algorithm, keyless",
    [
        ("hdr", RequestFacts("GET", "/", [("x-other", "1")])),
        ("hdr", RequestFacts("GET", "/", [("x-user", "")])),
        ("source", RequestFacts("GET", "/")),
        ("uri", None),
    ],
)
def test_hash_without_a_key_falls_back_to_round_robin(algorithm, keyless):
    balancer = make(algorithm, members("a", "b", "c"))
    assert names(balancer, 6, keyless) == "abcabc"


def test_hash_is_identical_across_instances_and_member_order():
    pool = [MemberState(f"srv-{i}", i % 3 + 1) for i in range(7)]
    one = make_balancer("uri", pool)
    two = make_balancer("uri", list(reversed([MemberState(m.name, m.weight) for m in pool])))
    for i in range(500):
        facts = key_facts("uri", i)
        assert one.pick(facts).name == two.pick(facts).name


_CHILD = """
import sys
from lbcore.l7.balance import MemberState, make_balancer
from lbcore.l7.facts import RequestFacts
pool = [MemberState(f"srv-{i}", i % 3 + 1) for i in range(7)]
b = make_balancer("hdr", pool, hash_header="x-user")
print(",".join(b.pick(RequestFacts("GET", "/", [("x-user", f"u{i}")])).name for i in range(300)))
"""


def test_hash_is_identical_across_processes_with_different_hash_seeds():
    outputs = set()
    for seed in ("1", "2", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        result = subprocess.run(
            [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True, timeout=60
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert len(set(outputs.pop().strip().split(","))) == 7


def test_hash_values_are_pinned():
    # Changing the hash re-homes every hashed client during a rolling upgrade (old and
    # new workers would disagree): these values may only change on purpose.
    assert key_hash(b"10.0.0.1") == 0x9617D6A467390F31
    assert member_seed("w1") == 0x32D9E025C2167EB3
    balancer = make_balancer("source", [MemberState(f"w{i}") for i in range(5)])
    picked = "".join(balancer.pick(src(f"10.0.0.{i}")).name[1] for i in range(20))
    assert picked == "10322114214410443334"


def test_many_algorithms_agree_on_tier_logic_with_mixed_weights():
    # A pool where primaries have different weights: every algorithm still only uses
    # primaries, and every primary gets some traffic over enough picks.
    for algorithm in ALGORITHMS:
        pool = members(("a", 1), ("b", 5), ("c", 2), ("x", 4, True))
        balancer = make(algorithm, pool)
        picked = collections.Counter(
            balancer.pick(key_facts(algorithm, i)).name for i in itertools.islice(itertools.count(), 400)
        )
        assert set(picked) == {"a", "b", "c"}, algorithm
