"""Selection at the edges, on made-up profiles and variants."""

from __future__ import annotations

import pytest

from edgeship.optimize.profiles import Profile
from edgeship.optimize.select import (
    Candidate,
    budget,
    choose,
    rank,
    release_requirements,
)

MiB = 1 << 20

VARIANTS = [
    Candidate("F16", 16.0, 1000 * MiB, kl_divergence=0.0, perplexity=5.00),
    Candidate("Q8_0", 8.5, 560 * MiB, kl_divergence=0.001, perplexity=5.01),
    Candidate("Q4_K_M", 4.9, 340 * MiB, kl_divergence=0.02, perplexity=5.10),
    Candidate("Q2_K", 3.0, 240 * MiB, kl_divergence=0.20, perplexity=5.90),
]


def device(name: str, ram_mib: int, usable: float = 0.5, arch: str = "aarch64") -> Profile:
    return Profile(name=name, title=name, ram=ram_mib * MiB, arch=arch, accelerator=None, tops=None, usable=usable)


def test_budget_is_usable_memory_less_headroom() -> None:
    assert budget(device("d", 1000, usable=0.5), headroom=0.1) == int(500 * MiB * 0.9)


@pytest.mark.parametrize(
    ("budget_mib", "expected"),
    [
        (560, "Q8_0"),  # just fits
        (559, "Q4_K_M"),  # just does not: the next best
        (340, "Q4_K_M"),
        (339, "Q2_K"),
        (240, "Q2_K"),
        (10_000, "F16"),
    ],
)
def test_best_variant_that_fits_at_the_edges(budget_mib: int, expected: str) -> None:
    # usable 1.0 and headroom 0 make the budget exactly the RAM
    [choice] = choose(VARIANTS, [device("edge", budget_mib, usable=1.0)], headroom=0.0)
    assert choice.variant == expected
    assert choice.needed is not None and choice.needed <= choice.budget == budget_mib * MiB


def test_none_fits_says_why() -> None:
    [choice] = choose(VARIANTS, [device("tiny", 239, usable=1.0)], headroom=0.0)
    assert choice.variant is None
    assert choice.needed == 240 * MiB
    assert "none fits: the smallest, Q2_K, needs 240 MiB; tiny allows 239 MiB" in choice.reason


def test_headroom_pushes_a_just_fitting_variant_out() -> None:
    p = device("edge", 1120, usable=0.5)  # 560 MiB usable: Q8_0 fits only without headroom
    assert choose(VARIANTS, [p], headroom=0.0)[0].variant == "Q8_0"
    assert choose(VARIANTS, [p], headroom=0.1)[0].variant == "Q4_K_M"
    assert "better Q8_0 needs 560 MiB" in choose(VARIANTS, [p], headroom=0.1)[0].reason


def test_quality_measure_falls_back_when_not_everyone_has_it() -> None:
    assert [c.name for c in rank(VARIANTS)] == ["F16", "Q8_0", "Q4_K_M", "Q2_K"]
    # a variant that is smaller but measured better wins on the measure
    odd = [Candidate("A", 8.0, 1, kl_divergence=0.3), Candidate("B", 4.0, 1, kl_divergence=0.1)]
    assert [c.name for c in rank(odd)] == ["B", "A"]
    by_ppl = [Candidate("A", 8.0, 1, perplexity=7.0), Candidate("B", 4.0, 1, perplexity=6.0, kl_divergence=0.1)]
    assert [c.name for c in rank(by_ppl)] == ["B", "A"]
    unmeasured = [Candidate("A", 4.0, 1, perplexity=6.0), Candidate("B", 8.0, 1)]
    assert [c.name for c in rank(unmeasured)] == ["B", "A"]


def test_one_choice_per_profile_in_order() -> None:
    profiles = [device("big", 4000), device("small", 600), device("none", 100)]
    assert [(c.profile, c.variant) for c in choose(VARIANTS, profiles)] == [("big", "F16"), ("small", "Q2_K"), ("none", None)]


def test_requirements_for_a_release() -> None:
    pi = device("pi", 4096, usable=0.75)
    mac = device("mac", 8192, usable=0.6, arch="arm64")
    laptop = device("laptop", 16384, usable=0.6, arch="x86_64")
    req = release_requirements(300 * MiB, [pi, mac])
    assert req.min_ram == 400 * MiB  # fits at all on 400 MiB at the best usable share (75%)
    assert req.arch == ("aarch64", "arm64")  # Linux and macOS names of the same ISA
    assert req.accelerator == ()
    assert release_requirements(300 * MiB, [laptop]).arch == ("x86_64",)
    with pytest.raises(ValueError):
        release_requirements(1, [])
