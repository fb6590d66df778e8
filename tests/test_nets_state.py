"""The kernel state is immutable (a layer never changes the state it is given unless it was donated), and the
modules of kernelscope.nets import each other without a cycle."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from kernelscope import nets
from kernelscope.nets import KState


def _t(*shape, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).normal(size=shape))


def _full(spatial=(), pairs=False, seed=0):
    """A full-mode state of 3 rows against 4 columns: Gram matrices of random inputs (PSD, consistent)."""
    P = int(np.prod(spatial)) if spatial else 1
    A, B = _t(3, 2, P, seed=seed), _t(4, 2, P, seed=seed + 1)
    shape = spatial + spatial if pairs else spatial
    if pairs:
        G = torch.einsum("acp,bcq->abpq", A, B) / 2
        V1, V2 = torch.einsum("acp,acq->apq", A, A) / 2, torch.einsum("bcp,bcq->bpq", B, B) / 2
    else:
        G = torch.einsum("acp,bcp->abp", A, B) / 2
        V1, V2 = (A * A).sum(1) / 2, (B * B).sum(1) / 2
    return KState(G.reshape((3, 4) + shape), G.reshape((3, 4) + shape) * 0.5, V1.reshape((3,) + shape),
                  V2.reshape((4,) + shape), 2, pairs=pairs)


def _diag(spatial=(), pairs=False):
    k = _full(spatial, pairs)
    return KState(k.var1, k.var1 * 0.5, k.var1, k.var1, 2, pairs=pairs)


def _tensors(k):
    """Every tensor a state holds, with a name (a list of states: all of theirs)."""
    if isinstance(k, list):
        return [(f"{i}.{n}", t) for i, s in enumerate(k) for n, t in _tensors(s)]
    out = [(f.name, getattr(k, f.name)) for f in dataclasses.fields(k)]
    if k.pending is not None:
        out += [(f"pending.{f.name}", getattr(k.pending, f.name)) for f in dataclasses.fields(k.pending)]
    return [(n, t) for n, t in out if isinstance(t, torch.Tensor)]


ACTIVATIONS = [nets.ReLU(), nets.LeakyReLU(0.1), nets.Erf(), nets.Erf(1.2, 0.7, 0.1), nets.GELU(), nets.Sin(),
               nets.Sign(), nets.Polynomial([0.1, 1.0, 0.3]), nets.Tanh(degree=8, rtol=None),
               nets.Elementwise(nngp_fn=lambda c, a, b: 0.5 * c + 0.1)]
VECTOR_LAYERS = [nets.Dense(3, 1.3, 0.2), nets.Dense(3, 1.1, 0.3, parameterization="standard"), nets.Identity(),
                 nets.LayerNorm(), *ACTIVATIONS,
                 nets.serial(nets.Dense(3, 1.2, 0.1), nets.ReLU(), nets.Dense(2), nets.Erf()),
                 nets.serial(nets.FanOut(2), nets.parallel(nets.ReLU(), nets.Dense(2, 0.9, 0.1)), nets.FanInSum()),
                 nets.serial(nets.FanOut(2), nets.parallel(nets.Erf(), nets.Dense(3)), nets.FanInConcat()),
                 nets.serial(nets.FanOut(3), nets.parallel(nets.ReLU(), nets.Dense(2), nets.Identity()),
                             nets.FanInProd())]
CONV_LAYERS = [nets.Conv(3, 2, padding="same", b_std=0.2), nets.Conv(3, 3, stride=2, padding="circular"),
               nets.LayerNorm(axis=(1, 2)), nets.ReLU(), nets.GELU(), nets.Flatten(), nets.GlobalAvgPool(),
               nets.AvgPool(2), nets.serial(nets.Conv(2, 3, padding="same"), nets.ReLU(), nets.AvgPool(2),
                                            nets.ReLU(), nets.Flatten(), nets.Dense(1))]
CASES = [(layer, make) for layer in VECTOR_LAYERS
         for make in (_full, _diag, lambda: nets.ReLU().kernel_fn(_full()))]  # the last: pending multipliers
CASES += [(layer, lambda pairs=pairs, mk=mk: mk((5,), pairs)) for layer in CONV_LAYERS for pairs in (False, True)
          for mk in (_full, _diag) if pairs or not isinstance(layer, (nets.AvgPool, nets.GlobalAvgPool, nets.Serial))]


@pytest.mark.parametrize("layer, make", CASES, ids=[f"{type(l).__name__}-{i}" for i, (l, _) in enumerate(CASES)])
def test_a_layer_leaves_the_state_it_is_given_unchanged(layer, make):
    k = make()
    before = [(n, t.clone()) for n, t in _tensors(k)]
    fields = {f.name: getattr(k, f.name) for f in dataclasses.fields(k)}
    out = layer.kernel_fn(k)
    for (n, t0), (_, t) in zip(before, _tensors(k)):
        assert torch.equal(t, t0), f"{layer!r} changed the state's {n}"
    assert all(getattr(k, n) is v for n, v in fields.items())
    # the same map on a donated copy (what the engine does): the same numbers, bit for bit
    out_d = layer.kernel_fn(k.writable().replace(donated=True))
    for s, s_d in zip(out if isinstance(out, list) else [out], out_d if isinstance(out_d, list) else [out_d]):
        assert not s.donated and s_d.donated
        s, s_d = s.materialized(), s_d.materialized()
        for (n, t), (_, t_d) in zip(_tensors(s), _tensors(s_d)):
            assert torch.equal(t, t_d), f"{layer!r}: {n} differs between the pure and the donated map"


def test_the_state_is_frozen_and_replace_returns_a_new_one():
    k = _diag()
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.nngp = k.var1
    k2 = k.replace(nngp=k.nngp * 2)
    assert k2 is not k and k2.var1 is k2.nngp and k.var1 is k.nngp  # diag mode: the variances follow nngp
    assert k.diag and not _full().diag and _full((5,), True).spatial == (5,) and _full((5,)).spatial == (5,)


def test_a_state_given_twice_gives_the_same_kernels():
    """A user's state can be passed to the network again (it used to be overwritten by the first call)."""
    net = nets.serial(nets.Dense(3, 1.2, 0.1), nets.ReLU(), nets.FanOut(2),
                      nets.parallel(nets.Dense(3), nets.LayerNorm()), nets.FanInSum(), nets.Dense(1))
    k = _full()
    a, b = net.kernel_fn(k).materialized(), net.kernel_fn(k).materialized()
    assert torch.equal(a.nngp, b.nngp) and torch.equal(a.ntk, b.ntk)


# --------------------------------------------------------------------------------------------------------------
# The import graph of kernelscope.nets
# --------------------------------------------------------------------------------------------------------------
def _nets_imports() -> dict[str, set[str]]:
    """Module of kernelscope.nets -> the modules of kernelscope.nets it imports (anywhere in the file, functions
    included; ``__init__`` for names imported from the package itself)."""
    root = Path(nets.__file__).parent
    mods = {p.stem for p in root.glob("*.py")}
    graph = {}
    for m in mods:
        deps = set()
        for node in ast.walk(ast.parse((root / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    parts = (node.module or "").split(".")
                    if parts[:2] != ["kernelscope", "nets"]:
                        continue
                    target = parts[2:]
                elif node.level == 1:
                    target = (node.module or "").split(".") if node.module else []
                elif node.module and node.module.split(".")[0] == "nets" and node.level == 2:
                    target = node.module.split(".")[1:]
                else:
                    continue
                if target:
                    deps.add(target[0] if target[0] in mods else "__init__")
                else:  # from . import a, b
                    deps.update(a.name if a.name in mods else "__init__" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[2] for a in node.names if a.name.startswith("kernelscope.nets."))
        graph[m] = deps - {m}
    return graph


def test_kernelscope_nets_has_no_import_cycle():
    graph = _nets_imports()
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, "import cycle: " + " -> ".join(path[path.index(m):] + (m,))
        if m in done:
            return
        for d in sorted(graph[m]):
            visit(d, path + (m,))
        done.add(m)

    for m in sorted(graph):
        visit(m, ())
    # the layering: the state at the bottom, the engine on it, the layers above; only the package imports all
    assert graph["state"] == set() and graph["params"] == set()
    assert graph["engine"] <= {"state", "params", "finite"}
    assert all("__init__" not in deps for m, deps in graph.items() if m != "__init__")


# -- the variances' memo ---------------------------------------------------------------------------------------
def test_the_memo_maps_each_block_of_a_held_tensor_once_and_anything_else_afresh():
    from kernelscope.nets.state import VarMemo

    V = _t(10, 3)
    memo, calls = VarMemo(V), []

    def fn(v):
        calls.append(v.shape[0])
        return v * 2.0

    a = memo.map("double", V[0:4], fn)
    b = memo.map("double", V[0:4], fn)  # a new view of the same rows: the same result object
    assert b is a and calls == [4]
    torch.testing.assert_close(a, V[0:4] * 2.0)
    memo.map("double", V[4:8], fn)  # other rows, another key: computed
    memo.map("triple", V[0:4], lambda v: v * 3.0)
    c = memo.map("double", a, fn)  # a kept result is held in turn: chains are memoised too
    assert memo.map("double", a, fn) is c and calls == [4, 4, 4]
    loose = V[0:4] + 0.0  # not held: the same place in memory may later hold something else
    memo.map("double", loose, fn)
    memo.map("double", loose, fn)
    assert calls == [4, 4, 4, 4, 4]


def test_past_its_limit_the_memo_keeps_nothing_and_still_maps():
    from kernelscope.nets.state import VarMemo

    V = _t(10, 3)
    memo = VarMemo(V, limit_bytes=0)
    a, b = memo.map("double", V[:5], lambda v: v * 2.0), memo.map("double", V[:5], lambda v: v * 2.0)
    assert a is not b and memo.nbytes == 0
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_cnn_kernel_is_the_same_with_and_without_the_memo(monkeypatch, threads):
    """Tiles that share rows share their variances' chain; with the memo off (its limit 0) nothing changes."""
    from kernelscope.nets import engine, state

    net = nets.serial(nets.Conv(8, 3, padding="circular", w_std=1.4, b_std=0.1), nets.ReLU(),
                      nets.Conv(8, 3, padding="same", w_std=1.4, b_std=0.1), nets.Erf(), nets.AvgPool(2),
                      nets.LayerNorm(axis=(1, 2)), nets.Conv(8, 3, w_std=1.4), nets.ReLU(), nets.GlobalAvgPool(),
                      nets.Dense(1))
    X = np.random.default_rng(0).standard_normal((23, 2, 12))
    Y = X[:7] * 0.7 + 0.1
    with_memo = [net.kernel(X, block_rows=5, threads=threads), net.kernel(Y, X, block_rows=4, threads=threads)]
    monkeypatch.setattr(engine, "VarMemo", lambda *held, limit_bytes: state.VarMemo(*held, limit_bytes=0))
    without = [net.kernel(X, block_rows=5, threads=threads), net.kernel(Y, X, block_rows=4, threads=threads)]
    for a, b in zip(with_memo, without):
        np.testing.assert_array_equal(a.nngp, b.nngp)
        np.testing.assert_array_equal(a.ntk, b.ntk)
