import numpy as np
import pytest

import rnnperturb as rp
from rnnperturb.cells.random import random_cell


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=["elman", "mgru"])
def kind(request):
    return request.param


def make_pair(kind, n=8, m=3, *, spectral_norm=0.9, rel=1e-2, seed=0):
    """A random cell and a copy whose recurrent matrices are perturbed by a
    random ΔW with ‖ΔW‖₂ = rel·‖W‖₂."""
    rng = np.random.default_rng(seed)
    cell = random_cell(kind, n, m, spectral_norm=spectral_norm, seed=rng)
    new = {}
    for k, W in cell.recurrent.items():
        dW = rng.standard_normal(W.shape)
        dW *= rel * np.linalg.norm(W, 2) / np.linalg.norm(dW, 2)
        new[k] = W + dW
    return cell, cell.replace(**new)


# --- torch tests: skip on a user's machine without torch, fail in CI ----------------------------
# A test needs torch when its function name contains "torch" (so ``-k torch`` selects all of them);
# it gets the ``torch`` marker. Under CI (environment variable CI set and not "0"/"false") a missing torch
# is an error, not a skip: at setup for the marked tests, and for any test that skips because
# torch cannot be imported (pytest.importorskip("torch") anywhere in tests/).
import importlib.util
import os


def _in_ci():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _torch_missing():
    return importlib.util.find_spec("torch") is None


def pytest_collection_modifyitems(config, items):
    for item in items:   # the test function's name, not its parameter ids
        if "torch" in getattr(item, "originalname", item.name).lower():
            item.add_marker(pytest.mark.torch)


def pytest_runtest_setup(item):
    if _in_ci() and item.get_closest_marker("torch") is not None and _torch_missing():
        pytest.fail("torch is not installed: CI must run the torch tests "
                    "(.ci/run installs torch==2.13.0, a CPU build)", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if (_in_ci() and rep.skipped and not hasattr(rep, "wasxfail") and call.excinfo is not None
            and "torch" in str(call.excinfo.value)):
        rep.outcome = "failed"
        rep.longrepr = f"skipped for want of torch under CI: {call.excinfo.value}"


def torch_rnn_with_head(torch, kind, layers, *, m=3, n=5, k=4):
    """A float64 ``nn.GRU``/``nn.LSTM``/``nn.RNN`` (``kind`` 'gru'/'lstm'/'rnn') of ``layers``
    layers with a ``Linear`` head on every step, as a user would write it; its weights are
    torch's default initialisation (callers seed torch or overwrite them)."""
    rnn_cls = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}[kind]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn_cls(m, n, num_layers=layers, dtype=torch.float64)
            self.fc = torch.nn.Linear(n, k, dtype=torch.float64)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    return Net()


def readout_net_and_task(kind, seed=0, n=6, m=3, T=8, B=8, vscale=4.0):
    """A small random net with a readout scaled for large margins, and a task whose targets
    are its own answers on the last two steps (so the nominal net recalls every sequence)
    (test_set_recall, test_safe_rank_sets)."""
    import numpy as np
    from rnnperturb.tasks.generators import Task
    c = rp.random_cell(kind, n=n, m=m, spectral_norm=0.8, n_out=3, seed=seed).astype(np.float64)
    c = c.replace(V=vscale * np.asarray(c.V))
    X = np.random.default_rng(seed).standard_normal((T, B, m))
    rec = np.zeros((T, B), bool)
    rec[-2:] = True
    y = np.argmax(c.readout(c.run(X)), -1)
    return c, Task("toy", X, np.where(rec, y, 0), rec, 3, "classification", rec)


def recalls_every_step(cell, task):
    """(B,) exact float64 simulation: the arg-max is the target at every recall step."""
    import numpy as np
    ok = (np.argmax(cell.readout(cell.run(task.X)), -1) == task.targets) | ~task.recall
    return ok.all(axis=0)


def with_delta(cell, dW):
    """``cell`` with ``dW[k]`` added to each named recurrent matrix."""
    import numpy as np
    return cell.replace(**{k: np.asarray(cell.recurrent[k]) + dW[k] for k in dW})
