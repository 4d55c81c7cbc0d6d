"""compression_cost and factors on hand-computed cases."""
import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell


@pytest.fixture
def elman():
    # n = 4, m = 2: W 16 entries, U 8, b 4 (12 input parameters, 8 input MACs)
    return random_cell("elman", 4, 2, seed=0)


def test_original_dense(elman):
    c = rp.compression_cost(elman, elman)
    assert (c.params, c.macs, c.bytes) == (28, 24, 224)
    assert (c.params_original, c.macs_original, c.bytes_original) == (28, 24, 224)
    assert c.ratio_params == c.ratio_macs == c.ratio_bytes == 1.0
    m = c.matrices["W"]
    assert (m.format, m.rank, m.nnz, m.bits, m.scheme) == ("dense", 4, 16, 64, None)
    # CSR of the dense W: 16 values * 8 + 4 * (16 indices + 5 row pointers) = 212 bytes
    assert m.bytes_csr == 212 and c.bytes_csr == 96 + 212 and c.bytes_dense == 224


def test_low_rank_threshold(elman):
    c = rp.compression_cost(elman, rp.truncate_svd(elman, rank=1))
    m = c.matrices["W"]
    assert (m.format, m.rank, m.params, m.macs, m.bytes) == ("lowrank", 1, 8, 8, 64)
    assert (c.params, c.macs, c.bytes) == (20, 16, 160)
    assert c.ratio_params == pytest.approx(20 / 28) and c.ratio_macs == pytest.approx(16 / 24)
    assert c.ratio_bytes == pytest.approx(160 / 224)
    # r = n/2 does not pay: stored dense
    c2 = rp.compression_cost(elman, rp.truncate_svd(elman, rank=2))
    assert c2.matrices["W"].format == "dense" and c2.matrices["W"].rank == 2
    assert c2.params == 28
    c0 = rp.compression_cost(elman, rp.truncate_svd(elman, rank=0))
    assert (c0.params, c0.macs, c0.bytes) == (12, 8, 96)


def test_pruned_dense_and_csr(elman):
    c = rp.compression_cost(elman, rp.prune(elman, fraction=0.5))
    m = c.matrices["W"]
    # nnz 8: CSR 8 * 8 + 4 * (8 + 5) = 116 bytes < 128 dense
    assert (m.format, m.nnz, m.params, m.macs, m.bytes, m.bytes_dense, m.bytes_csr) == \
        ("csr", 8, 8, 8, 116, 128, 116)
    assert (c.params, c.macs, c.bytes, c.bytes_dense, c.bytes_csr) == (20, 16, 212, 224, 212)
    c = rp.compression_cost(elman, rp.prune(elman, fraction=0.25))
    m = c.matrices["W"]
    # nnz 12: CSR 96 + 4 * 17 = 164 > 128: kept dense, CSR still reported
    assert (m.format, m.nnz, m.bytes, m.bytes_csr) == ("dense", 12, 128, 164)


def test_quantized_bytes(elman):
    q = rp.quantize(elman, bits=4)
    m = rp.compression_cost(elman, q).matrices["W"]
    nnz = int(np.count_nonzero(q.W))
    # 16 values * 4 bits = 8 bytes, plus one float64 step
    assert (m.bits, m.scheme, m.bytes_dense) == (4, "per_matrix", 8 + 8)
    assert m.bytes == 16 and m.bytes_csr == -(-nnz * 4 // 8) + 8 + 4 * (nnz + 5)
    assert rp.compression_cost(elman, q).bytes == 96 + 16
    m = rp.compression_cost(elman, rp.quantize(elman, bits=6, scheme="per_row")).matrices["W"]
    # 16 * 6 bits = 12 bytes, plus 4 row steps
    assert (m.bits, m.scheme, m.bytes_dense) == (6, "per_row", 12 + 32)
    small = random_cell("elman", 3, 1, seed=1)
    m = rp.compression_cost(small, rp.quantize(small, bits=3)).matrices["W"]
    assert m.bytes_dense == 4 + 8          # ceil(9 * 3 / 8) = 4


def test_mgru_and_float32():
    cell = random_cell("mgru", 4, 2, seed=2)
    c = rp.compression_cost(cell, cell)
    assert (c.params, c.macs, c.bytes) == (56, 48, 448)
    c = rp.compression_cost(cell, rp.truncate_svd(cell, rank={"Wf": 1}))
    assert (c.params, c.macs) == (8 + 16 + 24, 8 + 16 + 16)
    c32 = rp.cells.cell_from_params("mgru", cell.params, dtype=np.float32)
    c = rp.compression_cost(c32, c32)
    assert c.bytes == 56 * 4 and c.matrices["Wf"].bits == 32


def test_factors_reconstruct(kind):
    cell = random_cell(kind, 8, 2, seed=3)
    small = rp.truncate_svd(cell, rank={cell.recurrent_names[0]: 3})
    F = rp.factors(small)
    for k, (L, R) in F.items():
        r = 3 if k == cell.recurrent_names[0] else 8
        assert L.shape == (8, r) and R.shape == (r, 8)
        np.testing.assert_allclose(L @ R, small.recurrent[k], atol=1e-12)
    h = np.random.default_rng(0).standard_normal(8)
    L, R = F[cell.recurrent_names[0]]
    np.testing.assert_allclose((h @ R.T) @ L.T, small.recurrent[cell.recurrent_names[0]] @ h,
                               atol=1e-12)


def test_incompatible_raises(elman):
    other = random_cell("elman", 4, 2, seed=9)
    with pytest.raises(ValueError, match=r"other.U: expected exactly cell.U"):
        rp.compression_cost(elman, other)
    with pytest.raises(ValueError, match="index_bytes: expected an integer"):
        rp.compression_cost(elman, elman, index_bytes=0)


# ----- storage about the identity (issue 14, item 4): W = I + L R

def test_identity_lowrank_hand_computed(elman):
    small = rp.truncate_svd(elman, rank=1, about="identity")
    # the same cell costed without about: I + rank 1 is full rank, so dense as before
    c = rp.compression_cost(elman, small)
    assert c.matrices["W"].format == "dense" and c.params == 28 and c.matrices["W"].about is None
    assert c.matrices["W"].rank_about is None
    c = rp.compression_cost(elman, small, about="identity")
    m = c.matrices["W"]
    # I + L R, L 4x1, R 1x4: 8 numbers (none for I), 8 + 4 multiply-adds, 64 bytes
    assert (m.format, m.about, m.rank_about, m.rank) == ("identity_lowrank", "identity", 1, 4)
    assert (m.params, m.macs, m.bytes) == (8, 12, 64)
    assert (c.params, c.macs, c.bytes) == (12 + 8, 8 + 12, 96 + 64)
    assert c.ratio_params == pytest.approx(20 / 28) and c.ratio_macs == pytest.approx(20 / 24)
    assert c.ratio_bytes == pytest.approx(160 / 224)
    assert (c.params_original, c.macs_original, c.bytes_original) == (28, 24, 224)
    # rank 0: W = I, nothing stored and no arithmetic (W h = h)
    c0 = rp.compression_cost(elman, rp.truncate_svd(elman, rank=0, about="identity"),
                             about="identity")
    assert (c0.matrices["W"].format, c0.params, c0.macs, c0.bytes) == \
        ("identity_lowrank", 12, 8, 96)
    # rank n/2 does not pay: dense, with the rank of W - I still reported
    c2 = rp.compression_cost(elman, rp.truncate_svd(elman, rank=2, about="identity"),
                             about="identity")
    assert (c2.matrices["W"].format, c2.matrices["W"].rank_about, c2.params) == ("dense", 2, 28)
    # a plain truncation costed with about: W - I has full rank, the plain factors stay
    c1 = rp.compression_cost(elman, rp.truncate_svd(elman, rank=1), about="identity")
    m = c1.matrices["W"]
    assert (m.format, m.about, m.rank, m.rank_about, m.params, m.macs) == \
        ("lowrank", None, 1, 4, 8, 8)


def test_identity_lowrank_larger_and_mgru():
    cell = random_cell("elman", 10, 3, seed=4)
    c = rp.compression_cost(cell, rp.truncate_svd(cell, rank=3, about="identity"),
                            about="identity")
    # 2 * 10 * 3 = 60 numbers and 60 + 10 multiply-adds; inputs U 30 + b 10
    assert (c.matrices["W"].params, c.matrices["W"].macs, c.matrices["W"].bytes) == (60, 70, 480)
    assert (c.params, c.macs) == (40 + 60, 30 + 70)
    mg = random_cell("mgru", 4, 2, seed=2)
    small = rp.truncate_svd(mg, rank={"Wh": 1}, about={"Wh": "identity"})
    c = rp.compression_cost(mg, small, about={"Wh": "identity"})
    assert c.matrices["Wf"].format == "dense" and c.matrices["Wf"].rank_about is None
    assert (c.matrices["Wh"].format, c.matrices["Wh"].params, c.matrices["Wh"].macs) == \
        ("identity_lowrank", 8, 12)
    # inputs Uf, Uh 16 + biases 8; Wf dense 16; Wh 8 (12 multiply-adds)
    assert (c.params, c.macs) == (24 + 16 + 8, 16 + 16 + 12)


def test_identity_lowrank_float32_rounding():
    """The diagonal of I + LR rounded to float32 must not raise the rank of W - I."""
    c32 = rp.cells.cell_from_params("elman", random_cell("elman", 8, 2, seed=5).params,
                                    dtype=np.float32)
    small = rp.truncate_svd(c32, rank=2, about="identity")
    m = rp.compression_cost(c32, small, about="identity").matrices["W"]
    assert (m.format, m.rank_about, m.params, m.macs, m.bytes) == \
        ("identity_lowrank", 2, 32, 40, 128)


def test_factors_about_identity(kind):
    cell = random_cell(kind, 8, 2, seed=6)
    first = cell.recurrent_names[0]
    small = rp.truncate_svd(cell, rank={first: 3}, about="identity")
    F = rp.factors(small, about={first: "identity"})
    L, R = F[first]
    assert L.shape == (8, 3) and R.shape == (3, 8)
    np.testing.assert_allclose(np.eye(8) + L @ R, small.recurrent[first], atol=1e-12)
    h = np.random.default_rng(1).standard_normal(8)
    np.testing.assert_allclose(h + (h @ R.T) @ L.T, small.recurrent[first] @ h, atol=1e-12)
    for k in cell.recurrent_names[1:]:       # the others: plain factors of the full matrix
        L, R = F[k]
        assert L.shape == (8, 8)
        np.testing.assert_allclose(L @ R, small.recurrent[k], atol=1e-12)


def test_bad_about_cost(elman):
    with pytest.raises(ValueError, match=r"about: expected None, 'identity' or a dict"):
        rp.compression_cost(elman, elman, about="I")
    with pytest.raises(ValueError, match=r"about: expected keys among the recurrent matrices"):
        rp.factors(elman, about={"Wf": "identity"})
    with pytest.raises(ValueError, match=r"about: expected None or 'identity', found 'eye'"):
        rp.perturb.cost.matrix_cost("W", np.eye(3), about="eye")
