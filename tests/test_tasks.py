"""Task layouts by exact expected arrays; metrics by their definitions."""
import numpy as np

import rnnperturb as rp


def test_memorization_layout_tiny_exact():
    # K=2, L=2, D=1: T = 2L + D + 1 = 6; channels 0,1 symbols, 2 blank, 3 trigger
    task = rp.tasks.memorization_all(K=2, L=2, D=1)
    assert task.X.shape == (6, 4, 4)
    seq_10 = 2  # lexicographic order: 00, 01, 10, 11
    expected_X = np.array([
        [0, 1, 0, 0],   # data: symbol 1
        [1, 0, 0, 0],   # data: symbol 0
        [0, 0, 1, 0],   # blank (delay)
        [0, 0, 0, 1],   # trigger
        [0, 0, 1, 0],   # recall step, blank input
        [0, 0, 1, 0],
    ], dtype=float)
    np.testing.assert_array_equal(task.X[:, seq_10], expected_X)
    np.testing.assert_array_equal(task.targets[:, seq_10], [2, 2, 2, 2, 1, 0])
    np.testing.assert_array_equal(task.recall[:, seq_10], [0, 0, 0, 0, 1, 1])
    assert task.mask.all()
    assert task.n_out == 3 and task.params == {"K": 2, "L": 2, "D": 1}


def test_memorization_all_is_every_sequence_once():
    task = rp.tasks.memorization_all(2, 5, 10)
    assert task.B == 32 and task.T == 2 * 5 + 10 + 1
    data = task.X[:5].argmax(-1).T
    assert len({tuple(r) for r in data}) == 32
    np.testing.assert_array_equal(task.targets[-5:].T, data)
    # delay, trigger and recall inputs are identical across sequences
    assert np.all(task.X[5:] == task.X[5:, :1])


def test_memorization_sampled_is_seeded():
    a = rp.tasks.memorization(5, 10, 20, batch=8, seed=1)
    b = rp.tasks.memorization(5, 10, 20, batch=8, seed=1)
    c = rp.tasks.memorization(5, 10, 20, batch=8, seed=2)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    assert a.X.shape == (41, 8, 7)
    assert a.targets[:10].max() == 5 and a.targets[-10:].max() <= 4


def test_kback_targets_and_repeat_statistics():
    task = rp.tasks.kback(K=3, k=2, T=6, batch=1, seed=0)
    S = task.X[:, 0].argmax(-1)
    np.testing.assert_array_equal(task.targets[2:, 0], S[:-2])
    np.testing.assert_array_equal(task.mask[:, 0], [0, 0, 1, 1, 1, 1])
    # the repeat probability p gives P(s_t = s_{t-1}) = p + (1-p)/K
    for p in (0.0, 0.6):
        t = rp.tasks.kback(K=4, k=1, T=200, repeat=p, batch=200, seed=3)
        S = t.X.argmax(-1)
        same = (S[1:] == S[:-1]).mean()
        expect = p + (1 - p) / 4
        assert abs(same - expect) < 4 * np.sqrt(expect * (1 - expect) / S[1:].size)


def test_ar_signal_statistics():
    tau = 8.0
    t = rp.tasks.ar_signal(400, tau=tau, noise=0.0, batch=400, seed=4)
    s = t.targets[:, :, 0]
    np.testing.assert_allclose(t.X[:, :, 0], s)        # noise 0: the input is the signal
    assert abs(s.var() - 1) < 0.05                     # stationary, unit variance
    r1 = (s[1:] * s[:-1]).mean() / s.var()
    assert abs(r1 - np.exp(-1 / tau)) < 0.02           # lag-one autocorrelation a
    pred = rp.tasks.ar_signal(100, tau=tau, horizon=3, batch=2, seed=5)
    assert pred.targets.shape == (100, 2, 1) and not pred.mask[:10].any()


def test_metrics_definitions():
    task = rp.tasks.memorization_all(2, 2, 1)
    onehot = np.eye(3)[task.targets]          # perfect logits
    assert rp.metrics.per_step_accuracy(onehot, task) == 1.0
    assert rp.metrics.sequence_accuracy(onehot, task) == 1.0
    wrong = onehot.copy()
    wrong[-1, 0] = np.eye(3)[(task.targets[-1, 0] + 1) % 2]   # one recall error in sequence 0
    assert rp.metrics.sequence_accuracy(wrong, task) == 0.75
    assert rp.metrics.per_step_accuracy(wrong, task) == 1 - 1 / (6 * 4)
    ch = rp.metrics.chance_level(task)
    assert ch["sequence"] == 0.25 and abs(ch["per_step"] - (4 / 6 + 2 / 6 / 2)) < 1e-15
    reg = rp.tasks.ar_signal(50, batch=3, seed=0)
    assert rp.metrics.nmse(np.zeros_like(reg.targets) + reg.targets[reg.mask].mean(), reg) > 0.99
    assert rp.metrics.nmse(reg.targets, reg) == 0.0
