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
