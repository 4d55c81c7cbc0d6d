"""Certified-safe rank over a set of perturbations of the truncated network (issue 12):
``rp.certified_safe_rank(cell, task, perturbation=S)``. Checked against exact simulation of
set members applied to the truncated nets, against the single-perturbation certificate and
the truncated nets' own recall, and across nested sets."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.bounds.set_recall import GaussianNoise, certified_set_recall
from rnnperturb.perturb.elementwise import quantize_matrix

from conftest import readout_net_and_task, recalls_every_step, with_delta

KINDS = ("elman", "mgru")


def _net(kind, seed=0, n=8, **kw):
    return readout_net_and_task(kind, seed=seed, n=n, **kw)


_recalls = recalls_every_step
_with = with_delta


def _members(cell, S, seed):
    """Members of a Ball/Box around ``cell``: seeded boundary, spike and interior samples
    (box vertices, sphere points) and, for a box, its two extreme corners."""
    out = [S.sample(cell, seed + i, how=h) for i in range(4)
           for h in ("boundary", "spike", "interior")]
    if isinstance(S, rp.sets.Box):
        E = S.radii(cell)
        out += [{k: E[k] * (1 - 1e-12) for k in E}, {k: -E[k] * (1 - 1e-12) for k in E}]
    return out


def _roundings(cell, bits):
    """The actual round-to-nearest (quantize()), toward zero, floor and ceiling onto the
    b-bit grid of ``cell``'s own weights, as dW."""
    out = {"nearest": {}, "trunc": {}, "floor": {}, "ceil": {}}
    for k in cell.recurrent_names:
        W = np.asarray(cell.recurrent[k], np.float64)
        Wq, s = quantize_matrix(W, bits=bits)
        out["nearest"][k] = Wq - W
        for name, f in (("trunc", np.trunc), ("floor", np.floor), ("ceil", np.ceil)):
            out[name][k] = (s * f(W / s) - W) if s > 0 else np.zeros_like(W)
    return out


@pytest.mark.parametrize("kind", ["elman", pytest.param("mgru", marks=pytest.mark.slow)])
def test_zero_set_is_the_truncated_nets_own_recall(kind):
    """Radius 0: the set certificate at rank r tests W_r's own margins, so it certifies
    exactly the sequences W_r recalls (exact simulation), never fewer than the
    single-perturbation certificate (which bounds W_r's deviation from the full net), and
    its swept safe rank is the measured one, <= today's certified safe rank."""
    c, task = _net(kind)
    n = c.n
    ranks = range(n + 1)
    plain = rp.certified_safe_rank(c, task, ranks=ranks)
    truth = np.array([_recalls(rp.truncate_svd(c, rank=r), task).mean() for r in ranks])
    for S in (rp.sets.Box(radius=0.0), rp.sets.Ball(radius=0.0), GaussianNoise(std=0.0)):
        z = rp.certified_safe_rank(c, task, ranks=ranks, perturbation=S, samples=2)
        assert z.search == "sweep" and list(z.ranks) == list(ranks)
        np.testing.assert_array_equal(z.certified_accuracy, truth)
        np.testing.assert_array_equal(z.accuracy, truth)        # members = W_r itself
        np.testing.assert_array_equal(z.predicted_accuracy, truth)
        np.testing.assert_array_equal(plain.accuracy, truth)
        assert np.all(plain.certified_accuracy <= z.certified_accuracy)
        assert z.certified_safe_rank == plain.empirical_safe_rank == z.nominal_safe_rank
        assert plain.certified_safe_rank >= z.certified_safe_rank
    # per sequence: the single-perturbation certificate implies the zero-set one
    for r in ranks:
        small = rp.truncate_svd(c, rank=r)
        one = rp.certified_recall(c, small, task).certified
        zero = certified_set_recall(small, rp.sets.Box(radius=0.0), task, samples=0).certified
        assert np.all(zero[one])
        np.testing.assert_array_equal(zero, _recalls(small, task))
    # the example is not degenerate: some rank is certified with a set but not alone
    assert np.any(plain.certified_accuracy < z.certified_accuracy)


@pytest.mark.parametrize("kind", KINDS)
def test_certified_ranks_are_recalled_by_members(kind):
    """Soundness: at every rank certified over the set, members of the set around the
    truncated net (box vertices and corners, sphere points, and the actual round-to-nearest,
    truncation, floor and ceiling of the truncated weights onto their 7-bit grid) recall
    every sequence in exact simulation."""
    c, task = _net(kind, seed=0)
    ranks = range(c.n + 1)
    bits = 7
    cases = [rp.sets.Ball(radius=0.03), rp.sets.Box(radius=3e-3),
             lambda w: rp.sets.quantization(w, bits=bits, rounding="any")]
    checked = 0
    for S in cases:
        sr = rp.certified_safe_rank(c, task, ranks=ranks, perturbation=S, samples=4, seed=5)
        for r, ca, Sr in zip(sr.ranks, sr.certified_accuracy, sr.sets):
            if ca < 1.0:
                continue
            small = rp.truncate_svd(c, rank=int(r))
            members = _members(small, Sr, seed=10 * int(r))
            if callable(S) and not isinstance(S, rp.sets.PerturbationSet):
                members += list(_roundings(small, bits).values())
                assert Sr.contains(small, _roundings(small, bits)["nearest"])
                q = rp.quantize(small, bits=bits)
                assert _recalls(q, task).all()                  # quantize() itself
            for dW in members:
                assert _recalls(_with(small, dW), task).all(), (r, S)
                checked += 1
        assert sr.certified_safe_rank is not None                # something to check
        assert sr.certified_safe_rank > 0                        # and not every rank
    assert checked > 100


@pytest.mark.parametrize("kind", ["elman", pytest.param("mgru", marks=pytest.mark.slow)])
def test_larger_set_never_certifies_more(kind):
    """Nested sets (radius growing): per rank the certified accuracy never grows, the set of
    certified ranks shrinks, and the safe rank never decreases; the radii span a change."""
    c, task = _net(kind, seed=0)
    ranks = range(c.n + 1)
    for make in (lambda e: rp.sets.Ball(radius=e), lambda e: rp.sets.Box(radius=e / c.n)):
        prev, safe, seen = None, [], set()
        for eps in (0.0, 0.01, 0.1, 0.3):
            sr = rp.certified_safe_rank(c, task, ranks=ranks, perturbation=make(eps), samples=0)
            ca = np.asarray(sr.certified_accuracy)
            if prev is not None:
                assert np.all(ca <= prev)
            prev = ca
            seen.add(tuple(ca))
            safe.append(c.n + 1 if sr.certified_safe_rank is None else sr.certified_safe_rank)
        assert safe == sorted(safe)
        assert len(seen) > 2 and safe[0] < safe[-1]


def test_callable_builds_the_set_from_each_truncated_net():
    """perturbation=callable: called once per evaluated rank with that rank's truncated
    net (never the full net), and the set it returns is the quantization box of that net's
    own grid: radius = quantize_matrix(W_r) step / 2 (nearest), the full net's step differs."""
    c, task = _net("mgru", seed=3)
    seen = []

    def make(w):
        seen.append(w)
        return rp.sets.quantization(w, bits=8, rounding="nearest")

    sr = rp.certified_safe_rank(c, task, ranks=[2, 5, 8], perturbation=make, samples=0)
    assert [int(r) for r in sr.ranks] == [2, 5, 8] and len(seen) == 3 and len(sr.sets) == 3
    assert sr.perturbation is make
    for r, w, Sr in zip(sr.ranks, seen, sr.sets):
        ref = rp.truncate_svd(c, rank=int(r))
        for k in c.recurrent_names:
            np.testing.assert_array_equal(w.recurrent[k], ref.recurrent[k])
            _, step = quantize_matrix(np.asarray(ref.recurrent[k]), bits=8)
            E = Sr.radii(ref)[k]
            np.testing.assert_allclose(E, 0.5 * step, rtol=1e-12)
            _, full_step = quantize_matrix(np.asarray(c.recurrent[k]), bits=8)
            if r < c.n:
                assert abs(float(step) - float(full_step)) > 1e-6 * float(full_step)
        dq = {k: np.asarray(rp.quantize(ref, bits=8).recurrent[k]) - np.asarray(ref.recurrent[k])
              for k in c.recurrent_names}
        assert Sr.contains(ref, dq)


def test_bisection_returns_a_certified_rank():
    """Default ranks over a set: a bisection. Rank n first; every listed rank with full
    certified accuracy is individually certified (re-checked with certified_set_recall);
    the answer agrees with a full sweep's certified ranks and the rank below it fails."""
    c, task = _net("elman", seed=0)
    S = lambda w: rp.sets.quantization(w, bits=7, rounding="any")     # noqa: E731
    b = rp.certified_safe_rank(c, task, perturbation=S, samples=0)
    full = rp.certified_safe_rank(c, task, ranks=range(c.n + 1), perturbation=S, samples=0)
    assert b.search == "bisection" and c.n in b.ranks and len(b.ranks) < c.n + 1
    assert b.certified_safe_rank is not None
    ok_full = {int(r): a == 1.0 for r, a in zip(full.ranks, full.certified_accuracy)}
    for r, a in zip(b.ranks, b.certified_accuracy):
        small = rp.truncate_svd(c, rank=int(r))
        again = certified_set_recall(small, S(small), task, samples=0).certified.all()
        assert (a == 1.0) == again == ok_full[int(r)]
    r0 = b.certified_safe_rank
    assert ok_full[r0] and not ok_full[r0 - 1]
    assert full.certified_safe_rank <= r0
    assert b.nominal_safe_rank == full.nominal_safe_rank <= full.certified_safe_rank


def test_bisection_stops_when_full_rank_fails():
    """Rank n not certified: nothing is searched (no certified upper end to bisect from),
    even where a lower rank would certify (6 bits: rank 5 does, rank 8 does not -- the
    grid of each truncated net differs, so certification is not monotone in r)."""
    c, task = _net("elman", seed=0)
    S = lambda w: rp.sets.quantization(w, bits=6, rounding="any")     # noqa: E731
    b = rp.certified_safe_rank(c, task, perturbation=S, samples=0)
    assert list(b.ranks) == [c.n] and b.certified_safe_rank is None
    sw = rp.certified_safe_rank(c, task, ranks=[5], perturbation=S, samples=0)
    assert sw.certified_safe_rank == 5
    b = rp.certified_safe_rank(c, task, perturbation=rp.sets.Ball(radius=10.0), samples=0)
    assert list(b.ranks) == [c.n] and b.certified_safe_rank is None
    assert b.certified_accuracy[0] < 1.0


def test_noise_over_ranks_is_below_zero_noise():
    """GaussianNoise at every rank: never more certified than the zero set; seeded draws at a
    certified rank recall every sequence (a 0.99-confidence statement, checked on 8 draws)."""
    c, task = _net("mgru", seed=0)
    ranks = range(c.n + 1)
    z = rp.certified_safe_rank(c, task, ranks=ranks, perturbation=GaussianNoise(std=0.0),
                               samples=0)
    g = GaussianNoise(std=1e-3, confidence=0.99)
    s = rp.certified_safe_rank(c, task, ranks=ranks, perturbation=g, samples=8, seed=1)
    assert np.all(s.certified_accuracy <= z.certified_accuracy)
    assert s.certified_safe_rank is not None
    small = rp.truncate_svd(c, rank=s.certified_safe_rank)
    rng = np.random.default_rng(7)
    for _ in range(8):
        assert _recalls(_with(small, g.sample(small, rng)), task).all()


def test_errors_name_the_argument():
    c, task = _net("elman")
    with pytest.raises(ValueError, match="perturbation: expected a set"):
        rp.certified_safe_rank(c, task, perturbation=3)
    with pytest.raises(ValueError, match="perturbation: expected a set"):
        rp.certified_safe_rank(c, task, perturbation=rp.truncate_svd(c, rank=2))
    with pytest.raises(ValueError, match="perturbation: expected the callable to return"):
        rp.certified_safe_rank(c, task, perturbation=lambda w: 0.1, ranks=[3])
    with pytest.raises(ValueError, match=r"perturbation: radius: expected keys among \['W'\], "
                                         r"found \['Wf'\]"):
        rp.certified_safe_rank(c, task, perturbation=rp.sets.Ball(radius={"Wf": 0.1}))
    with pytest.raises(ValueError, match=r"perturbation: radius\['W'\]: expected shape \(8, 8\)"):
        rp.certified_safe_rank(c, task, perturbation=rp.sets.Box(radius={"W": np.ones((3, 3))}))
    with pytest.raises(ValueError, match="perturbation: radius"):   # from the callable
        rp.certified_safe_rank(c, task, ranks=[3],
                               perturbation=lambda w: rp.sets.Ball(radius={"Wh": 0.1}))
    with pytest.raises(ValueError, match="bound_fn: expected None with perturbation="):
        rp.certified_safe_rank(c, task, perturbation=rp.sets.Ball(radius=0.1),
                               bound_fn=lambda a, b, X: np.zeros(X.shape[:2]))
    with pytest.raises(ValueError, match="ranks: expected a sequence of integers"):
        rp.certified_safe_rank(c, task, perturbation=rp.sets.Ball(radius=0.1), ranks=3)
    with pytest.raises(ValueError, match="ranks: expected at least one rank"):
        rp.certified_safe_rank(c, task, perturbation=rp.sets.Ball(radius=0.1), ranks=[])
    with pytest.raises(ValueError, match="ranks: expected"):
        rp.certified_safe_rank(c, task, perturbation=rp.sets.Ball(radius=0.1), ranks=[9])
    with pytest.raises(ValueError, match="samples: expected"):
        rp.certified_safe_rank(c, task, perturbation=rp.sets.Ball(radius=0.1), samples=-1)
    with pytest.raises(ValueError, match="tier: expected"):
        rp.certified_safe_rank(c, task, tier="exact")
    with pytest.raises(ValueError, match="one_sided: expected False without perturbation="):
        rp.certified_safe_rank(c, task, one_sided=True)
    with pytest.raises(ValueError, match="one_sided: expected True or False, found 'yes'"):
        rp.certified_safe_rank(c, task, perturbation=rp.sets.Ball(radius=0.1), one_sided="yes")
    with pytest.raises(ValueError, match="chords: expected False without perturbation="):
        rp.certified_safe_rank(c, task, chords=True)
    with pytest.raises(ValueError, match="chords: expected True or False, found 0"):
        rp.certified_safe_rank(c, task, perturbation=rp.sets.Ball(radius=0.1), chords=0)
    with pytest.raises(ValueError, match="task: expected"):
        rp.certified_safe_rank(c, "task", perturbation=rp.sets.Ball(radius=0.1))


def test_cli_set_recommendation_is_certified_safe_rank(tmp_path, capsys):
    """analyze --tolerance-accuracy with --bits: the certified rank under the set is
    certified_safe_rank(perturbation=) on the sequences the full net gets right (a sweep of
    --ranks, else the bisection); at that rank the actual quantize() and truncation toward
    zero of the truncated weights keep every correct prediction (exact simulation)."""
    import json
    from rnnperturb.bounds.recall import label_task
    from rnnperturb.bounds.set_recall import _subset
    from rnnperturb.report.cli import main
    rng = np.random.default_rng(2)
    n, m, k, B, T = 6, 3, 3, 40, 8
    cell = rp.ElmanRNN(W=0.6 * rng.standard_normal((n, n)), U=rng.standard_normal((n, m)),
                       b=np.zeros(n), V=2 * rng.standard_normal((k, n)), c=np.zeros(k))
    X = rng.standard_normal((T, B, m))
    y = np.argmax(cell.readout(cell.run(X)[-1]), -1)
    y = np.where(rng.random(B) < 0.2, (y + 1) % k, y)           # full accuracy < 1
    rp.save(tmp_path / "e.npz", cell)
    np.savez(tmp_path / "X.npz", X=X, y=y)
    base = ["analyze", str(tmp_path / "e.npz"), "--inputs", str(tmp_path / "X.npz"),
            "--tolerance-accuracy", "0.01", "--bits", "12", "--samples", "2"]
    task = label_task(cell, X, y)
    right = np.flatnonzero(_recalls(cell, task))
    make = lambda w: rp.sets.quantization(w, bits=12, rounding="any")     # noqa: E731
    for extra, ranks in ((["--ranks", "3:6"], [3, 4, 5, 6]), ([], None)):
        assert main(base + extra + ["--json"]) == 0
        rec = json.loads(capsys.readouterr().out)["set_recommendations"][0]
        sr = rp.certified_safe_rank(cell, _subset(task, right), ranks=ranks, perturbation=make,
                                    samples=2, chords=True)
        assert rec["search"] == ("sweep" if ranks else "bisection") == sr.search
        assert rec["ranks_evaluated"] == [int(r) for r in sr.ranks]
        np.testing.assert_allclose(rec["certified_accuracy"],
                                   np.asarray(sr.certified_accuracy) * right.size / B,
                                   rtol=1e-12)
        r = sr.certified_safe_rank
        assert r is not None and rec["rank"] == {"W": r} and rec["sequences"] == right.size
        small = rp.truncate_svd(cell, rank=r)
        for member in (rp.quantize(small, bits=12),
                       _with(small, _roundings(small, 12)["trunc"])):
            ok = np.argmax(member.readout(member.run(X)[-1]), -1) == y
            assert ok[right].all()
    assert main(base + ["--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"recommendation (accuracy, certified under 12 bits, any rounding): rank {r}," in out
    assert main(base[:4] + ["--bits", "12", "--json"]) == 0       # no --tolerance-accuracy
    assert "set_recommendations" not in json.loads(capsys.readouterr().out)


def _readme_paragraph():
    import pathlib
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("**Truncation, then a set**")
    return " ".join(text[start:text.index("\n\n", start)].split())


_MGRU_D10 = "validation/checkpoints/mgru_memorization_D10.npz"


def _mgru_d10():
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / _MGRU_D10
    if not path.exists():
        pytest.skip(f"{_MGRU_D10} not shipped")
    cell, meta = rp.load_with_metadata(str(path))
    return cell.astype(np.float64), rp.tasks.memorization_all(meta["K"], meta["L"], meta["D"])


def test_readme_measured_ranks_of_mgru_d10():
    """The README's measured numbers: the truncated MGRU D10, and quantize(bits=8) of it, first
    recall all 32 sequences at rank 13, and do at every rank from there (exact runs)."""
    import re
    cell, task = _mgru_d10()
    para = _readme_paragraph()
    r0 = int(re.search(r"recall every sequence from rank (\d+) on \(measured\)", para).group(1))
    n = cell.n
    own = [_recalls(rp.truncate_svd(cell, rank=r), task).all() for r in range(n + 1)]
    q8 = [_recalls(rp.quantize(rp.truncate_svd(cell, rank=r), bits=8), task).all()
          for r in range(n + 1)]
    assert own.index(True) == r0 and q8.index(True) == r0 and all(q8[r0:])


@pytest.mark.slow
def test_readme_certified_ranks_of_mgru_d10():
    """The README's certified numbers (5 certificates, several minutes): every rounding of
    the rank-13 truncation to 16 bits is certified on all 32 sequences (rank 12's truncated
    net misses one, so 13 is the smallest); at 15 bits ranks 13 and 14 certify 31 and 30 of
    32 and rank 15 all; 8 bits certifies no sequence at rank 64."""
    import re
    cell, task = _mgru_d10()
    para = _readme_paragraph()
    r16 = int(re.search(r"every rounding to 16 bits at rank (\d+)", para).group(1))
    r15 = int(re.search(r"to 15 bits at rank (\d+)", para).group(1))
    c13, c14 = (int(v) for v in re.search(r"rank 13 certifies (\d+)/32 sequences and rank 14 "
                                          r"only (\d+)/32", para).groups())
    assert "certified accuracy 0/32" in para
    q = lambda b: (lambda w: rp.sets.quantization(w, bits=b, rounding="any"))    # noqa: E731
    s16 = rp.certified_safe_rank(cell, task, ranks=[r16], perturbation=q(16), samples=0)
    assert s16.certified_safe_rank == r16 == s16.nominal_safe_rank
    s15 = rp.certified_safe_rank(cell, task, ranks=[13, 14, r15], perturbation=q(15), samples=0)
    assert s15.certified_safe_rank == r15
    np.testing.assert_array_equal(np.asarray(s15.certified_accuracy)[:2] * 32, [c13, c14])
    s8 = rp.certified_safe_rank(cell, task, ranks=[cell.n], perturbation=q(8), samples=0)
    assert s8.certified_safe_rank is None and s8.certified_accuracy[0] == 0.0


def test_one_sided_is_passed_to_the_set_certificate(monkeypatch):
    """certified_safe_rank(one_sided=True) certifies at each rank what
    certified_set_recall(one_sided=True) certifies on that rank's truncated net (and
    that is the call it makes: the option changes the bounds, not always the count); the
    same for chords=True."""
    import importlib
    mod = importlib.import_module("rnnperturb.bounds.set_recall")
    seen = []
    orig = mod.certified_set_recall

    def spy(*a, **kw):
        seen.append(kw.get("one_sided"))
        chords.append(kw.get("chords"))
        return orig(*a, **kw)
    chords = []
    monkeypatch.setattr(mod, "certified_set_recall", spy)
    c, task = _net("elman", seed=0)
    S = rp.sets.Ball(radius=0.05)
    ranks = [3, 5, c.n]
    sr = rp.certified_safe_rank(c, task, ranks=ranks, perturbation=S, samples=0, one_sided=True)
    assert seen == [True] * len(ranks)
    rp.certified_safe_rank(c, task, ranks=ranks[:1], perturbation=S, samples=0)
    assert seen[-1] is False and chords == [False] * (len(ranks) + 1)
    rp.certified_safe_rank(c, task, ranks=ranks[:1], perturbation=S, samples=0, chords=True)
    assert chords[-1] is True
    monkeypatch.undo()
    for r, ca in zip(sr.ranks, sr.certified_accuracy):
        ref = certified_set_recall(rp.truncate_svd(c, rank=int(r)), S, task, samples=0,
                                   one_sided=True)
        assert ca == pytest.approx(float(np.mean(ref.certified)))
