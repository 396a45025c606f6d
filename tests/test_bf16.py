"""bfloat16 products (_bf16.h): the rounding against a NumPy reference, the product against
the float64 product of the rounded operands, the emulation against VDPBF16PS, and the
FASTBP_BF16 switch."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp import _bf16

NATIVE = _bf16.bf16_cpu_capability() == "avx512_bf16"
MODES = ["emulate"] + (["native"] if NATIVE else [])
needs_native = pytest.mark.skipif(not NATIVE, reason="CPU or build lacks AVX512_BF16")
EPS32 = 2.0 ** -24          # float32 unit roundoff



def bf16_bits_ref(x):
    """float32 -> bfloat16 bits (uint16 as uint32) as VCVTNE2PS2BF16: round to nearest
    even, NaN kept and made quiet, denormal inputs to signed zero."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    denormal = (u & 0x7F800000) == 0
    out = np.where(nan, (u >> 16) | 0x40, np.where(denormal, (u >> 16) & 0x8000, rounded))
    return out.astype(np.uint32)


def bf16_round_ref(x):
    return (bf16_bits_ref(x) << 16).astype(np.uint32).view(np.float32)


def test_reference_rounding_itself():
    """The NumPy reference on hand-checked cases: ties to even both ways, carry into the
    exponent, overflow to inf, NaN quieted, denormals flushed with their sign."""
    cases = {0x3F808000: 0x3F80,   # 1 + 2^-8: a tie, even below -> down
             0x3F818000: 0x3F82,   # tie, odd below -> up
             0x3F808001: 0x3F81,   # just above the tie -> up
             0x3F807FFF: 0x3F80,   # just below -> down
             0x3FFFFFFF: 0x4000,   # carry into the exponent
             0x7F7FFFFF: 0x7F80,   # the largest float32 -> inf
             0x7F800000: 0x7F80, 0xFF800000: 0xFF80,   # +-inf
             0x7F800001: 0x7FC0,   # signalling NaN -> quiet
             0xFFC12345: 0xFFC1,   # NaN payload's top bits kept
             0x00000001: 0x0000, 0x807FFFFF: 0x8000,   # denormals -> signed zero
             0x00800000: 0x0080,   # the smallest normal stays
             0x80000000: 0x8000}
    bits = np.array(list(cases), dtype=np.uint32)
    np.testing.assert_array_equal(bf16_bits_ref(bits.view(np.float32)),
                                  np.array(list(cases.values()), dtype=np.uint32))


def _special_and_random_floats(rng):
    special = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x3FFFFFFF, 0x7F7FFFFF,
                        0x7F800000, 0xFF800000, 0x7F800001, 0x7FBFFFFF, 0xFFC12345, 0x7FC00000,
                        0x00000001, 0x807FFFFF, 0x00800000, 0x80000000, 0, 0x3F800000],
                       dtype=np.uint32)
    random_bits = rng.integers(0, 2 ** 32, size=20001, dtype=np.uint64).astype(np.uint32)
    # ties and near-ties of random numbers, which random bits rarely hit
    ties = (random_bits[:2000] & 0xFFFF0000) | rng.choice(
        np.array([0x8000, 0x7FFF, 0x8001], dtype=np.uint32), 2000)
    return np.concatenate([special, random_bits, ties]).view(np.float32)


@pytest.mark.parametrize("which", MODES)
def test_rounding_matches_reference_bitwise(bf16_mode, which, rng):
    """Every float32 bit pattern class (random bits cover NaNs, infs, denormals, both
    signs), odd lengths (the vector path's tail)."""
    _bf16.set_bf16_mode(which)
    x = _special_and_random_floats(rng)
    for count in (len(x), 31, 33, 1):
        got = _bf16.bf16_round(x[:count]).view(np.uint32)
        want = bf16_round_ref(x[:count]).view(np.uint32)
        np.testing.assert_array_equal(got, want, err_msg=f"{which}, {count} values")


def _operands(rng, transa, transb, m, n, k, pad=0, scale=1.0):
    """A, B (stored as op() needs), C; `pad` extra columns make the rows strided."""
    def mat(r, c):
        return (scale * rng.standard_normal((r, c + pad))).astype(np.float32)[:, :c]
    A = mat(k, m) if transa else mat(m, k)
    B = mat(n, k) if transb else mat(k, n)
    return A, B, mat(m, n)


def _reference(A, B, C, transa, transb, alpha, beta):
    """The float64 product of the bf16-rounded operands, and an elementwise bound on a
    float32 sum of k terms from it (|sum error| <= k u sum |terms|, plus the alpha/beta
    roundings)."""
    opa = bf16_round_ref(A.T if transa else A).astype(np.float64)
    opb = bf16_round_ref(B.T if transb else B).astype(np.float64)
    k = opa.shape[1]
    want = alpha * (opa @ opb)
    mag = abs(alpha) * (np.abs(opa) @ np.abs(opb))
    if beta != 0:
        want = want + beta * C.astype(np.float64)
        mag = mag + np.abs(beta * C.astype(np.float64))
    tol = (k + 3) * EPS32 * mag + 1e-37
    return want, tol


# (m, n, k): the 8 x 48 register tile's edges (m % 8, n % 48, n % 16), k odd, k across the
# 256 k block, one-row / one-column products, and a panel wider than one tile
SHAPES = [(1, 1, 1), (1, 1, 2), (7, 5, 3), (8, 48, 2), (9, 49, 17), (8, 16, 255), (17, 47, 256),
          (16, 96, 257), (13, 64, 513), (37, 45, 129), (3, 100, 64), (100, 10, 31),
          (33, 97, 1), (64, 130, 300)]


@pytest.mark.parametrize("which", MODES)
@pytest.mark.parametrize("transa", [False, True])
@pytest.mark.parametrize("transb", [False, True])
def test_product_matches_rounded_reference(bf16_mode, which, transa, transb, rng):
    """All four forms, the ragged shapes, strided rows, alpha/beta including beta 0 (C is
    NaN there: never read) and beta 1."""
    _bf16.set_bf16_mode(which)
    for m, n, k in SHAPES:
        for alpha, beta in [(1.0, 0.0), (1.0, 1.0), (0.5, 2.0), (-1.5, -0.25)]:
            A, B, C = _operands(rng, transa, transb, m, n, k, pad=3)
            C0 = C.copy()
            if beta == 0:
                C[...] = np.nan
            want, tol = _reference(A, B, C0, transa, transb, alpha, beta)
            got = _bf16.bf16_gemm(A, B, transa, transb, alpha, beta, C)
            assert got is C
            err = np.abs(got - want)
            assert np.all(err <= tol), (which, transa, transb, (m, n, k), alpha, beta,
                                        float((err / tol).max()))


@pytest.mark.parametrize("which", MODES)
def test_rounding_is_what_is_measured(bf16_mode, which, rng):
    """The test above is not vacuous: with k large the product of the unrounded operands is
    far outside its tolerance, the product of the rounded ones inside."""
    _bf16.set_bf16_mode(which)
    A, B, _ = _operands(rng, False, False, 16, 64, 512)
    got = _bf16.bf16_gemm(A, B)
    want, tol = _reference(A, B, None, False, False, 1.0, 0.0)
    exact = A.astype(np.float64) @ B.astype(np.float64)
    assert np.all(np.abs(got - want) <= tol)
    assert np.mean(np.abs(got - exact) > tol) > 0.5


@pytest.mark.parametrize("which", MODES)
@pytest.mark.parametrize("m, n, k", [(0, 5, 3), (5, 0, 3), (0, 0, 0), (4, 6, 0)])
def test_zero_sizes(bf16_mode, which, m, n, k, rng):
    """Empty products: nothing to do, or (k == 0) C := beta C, zeros when beta == 0."""
    _bf16.set_bf16_mode(which)
    for transa in (False, True):
        for transb in (False, True):
            A = np.ones((k, m) if transa else (m, k), np.float32)
            B = np.ones((n, k) if transb else (k, n), np.float32)
            C = np.full((m, n), np.nan, np.float32)
            got = _bf16.bf16_gemm(A, B, transa, transb, 1.0, 0.0, C)
            assert got.shape == (m, n) and not np.isnan(got).any()
            np.testing.assert_array_equal(got, 0)
            C = np.full((m, n), 3.0, np.float32)
            np.testing.assert_array_equal(_bf16.bf16_gemm(A, B, transa, transb, 1.0, 0.5, C), 1.5)
            assert _bf16.bf16_gemm(A, B, transa, transb).shape == (m, n)


@pytest.mark.parametrize("which", MODES)
def test_nan_and_inf_propagate(bf16_mode, which, rng):
    _bf16.set_bf16_mode(which)
    A, B, _ = _operands(rng, False, False, 20, 70, 40)
    A[3, 7] = np.nan
    B[5, 60] = np.inf
    C = _bf16.bf16_gemm(A, B)
    assert np.isnan(C[3]).all()
    col = C[:, 60][np.arange(20) != 3]
    assert np.all(np.isinf(col) | np.isnan(col))          # inf * (+-x), or inf * 0 = NaN
    others = np.delete(np.delete(C, 3, axis=0), 60, axis=1)
    assert np.isfinite(others).all()


@needs_native
@pytest.mark.parametrize("transa", [False, True])
@pytest.mark.parametrize("transb", [False, True])
def test_emulation_matches_native(bf16_mode, transa, transb, rng):
    """Both implementations pack the same bf16 words and sum in the same order, so they agree
    to float32 rounding; on the CPUs seen so far (AMD Zen 4) they agree bit for bit."""
    for m, n, k in SHAPES + [(128, 512, 784)]:
        A, B, C = _operands(rng, transa, transb, m, n, k, scale=3.0)
        _bf16.set_bf16_mode("native")
        native = _bf16.bf16_gemm(A, B, transa, transb, 0.75, 0.5, C.copy())
        _bf16.set_bf16_mode("emulate")
        emulated = _bf16.bf16_gemm(A, B, transa, transb, 0.75, 0.5, C.copy())
        _, tol = _reference(A, B, C, transa, transb, 0.75, 0.5)
        assert np.all(np.abs(native - emulated) <= tol), (transa, transb, (m, n, k))
        np.testing.assert_array_equal(native, emulated, err_msg=f"{(m, n, k)}: not bitwise; "
                                      "VDPBF16PS sums a pair in another order on this CPU")


@pytest.mark.parametrize("which", MODES)
def test_threads_and_splits_give_the_same_bits(bf16_mode, which, rng):
    """Every C entry is summed in one order whatever the threads, and a row or column block
    of a product is the same as that block of the whole (as the engine splits products).
    k = 600 is three k blocks; dW's shape (op(A) = A^T with more rows than columns) has its
    A pack split over the threads."""
    _bf16.set_bf16_mode(which)
    for m, n, k in [(300, 100, 520), (784, 96, 130)]:
        A, B, _ = _operands(rng, True, False, m, n, k)
        whole = _bf16.bf16_gemm(A, B, True, False)
        for threads in (2, 3, 7):
            np.testing.assert_array_equal(
                _bf16.bf16_gemm(A, B, True, False, n_threads=threads), whole)
    for transa, transb in [(False, False), (False, True), (True, False)]:
        A, B, _ = _operands(rng, transa, transb, 40, 300, 600)
        whole = _bf16.bf16_gemm(A, B, transa, transb)
        np.testing.assert_array_equal(_bf16.bf16_gemm(A, B, transa, transb, n_threads=2), whole)
        np.testing.assert_array_equal(_bf16.bf16_gemm(A, B, transa, transb, n_threads=7), whole)
        C = np.empty_like(whole)
        Bl, Br = (B[:100], B[100:]) if transb else (B[:, :100], B[:, 100:])
        _bf16.bf16_gemm(A, Bl, transa, transb, C=C[:, :100])
        _bf16.bf16_gemm(A, Br, transa, transb, C=C[:, 100:])
        np.testing.assert_array_equal(C, whole)
        At, Ab = (A[:, :19], A[:, 19:]) if transa else (A[:19], A[19:])
        _bf16.bf16_gemm(At, B, transa, transb, C=C[:19])
        _bf16.bf16_gemm(Ab, B, transa, transb, C=C[19:])
        np.testing.assert_array_equal(C, whole)


@pytest.mark.parametrize("which", MODES)
def test_a_few_rows_give_the_bits_of_the_whole_product(bf16_mode, which, rng):
    """1 to 4 rows of A times B (the serving path: B rounded in registers, nothing packed)
    are those rows of the tiled product, over several k blocks, odd k, column blocks,
    threads, strided rows, alpha and beta."""
    _bf16.set_bf16_mode(which)
    for n, k in [(300, 600), (37, 7), (2100, 513), (16, 2)]:
        A, B, C0 = _operands(rng, False, False, 12, n, k, pad=3)
        for alpha, beta in [(1.0, 0.0), (0.5, 1.5)]:
            whole = _bf16.bf16_gemm(A, B, alpha=alpha, beta=beta, C=C0.copy())
            for m in (1, 2, 3, 4):
                for threads in (1, 2, 3):
                    C = C0[:m].copy()
                    _bf16.bf16_gemm(A[:m], B, alpha=alpha, beta=beta, C=C, n_threads=threads)
                    np.testing.assert_array_equal(C, whole[:m], err_msg=f"{n} {k} {m}")
    A, B, _ = _operands(rng, False, False, 3, 50, 40)
    B[5, 7], B[8, 9], A[1, 3] = np.nan, np.inf, np.inf
    few = _bf16.bf16_gemm(A, B)
    ref = _bf16.bf16_gemm(np.vstack([A, np.zeros((9, 40), np.float32)]), B)[:3]
    np.testing.assert_array_equal(few, ref)
    assert np.isnan(few[:, 7]).all() and np.isinf(few[1]).any()


def test_arguments_are_checked():
    A = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="float32"):
        _bf16.bf16_gemm(A.astype(np.float64), A.T.copy())
    with pytest.raises(ValueError, match="op\\(A\\) is 3x4"):
        _bf16.bf16_gemm(A, A)
    with pytest.raises(ValueError, match="contiguous rows"):
        _bf16.bf16_gemm(A, np.ones((3, 4), np.float32).T)      # columns strided
    with pytest.raises(ValueError, match="needs C"):
        _bf16.bf16_gemm(A, A, transb=True, beta=1.0)
    with pytest.raises(ValueError, match="C must be 3x3"):
        _bf16.bf16_gemm(A, A, transb=True, C=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="n_threads"):
        _bf16.bf16_gemm(A, A, transb=True, n_threads=0)
    with pytest.raises(ValueError, match="auto"):
        _bf16.set_bf16_mode("fast")
    if not NATIVE:
        with pytest.raises(ValueError, match="lacks AVX512_BF16"):
            _bf16.set_bf16_mode("native")


def _run(code, **env):
    e = dict(os.environ)
    e.pop("FASTBP_BF16", None)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                          timeout=120)


PROBE = """
import numpy as np
from fastbp import _bf16
rng = np.random.default_rng(0)
A = rng.standard_normal((19, 70)).astype(np.float32)
B = rng.standard_normal((70, 33)).astype(np.float32)
C = _bf16.bf16_gemm(A, B)
ra = (((A.view(np.uint32).astype(np.uint64) + 0x7FFF + ((A.view(np.uint32) >> 16) & 1)) >> 16)
      << 16).astype(np.uint32).view(np.float32)
rb = (((B.view(np.uint32).astype(np.uint64) + 0x7FFF + ((B.view(np.uint32) >> 16) & 1)) >> 16)
      << 16).astype(np.uint32).view(np.float32)
err = np.abs(C - ra.astype(np.float64) @ rb.astype(np.float64)).max()
print(_bf16.bf16_capability(), _bf16.bf16_cpu_capability(), err < 1e-4)
"""


def test_env_forces_emulation():
    """FASTBP_BF16=emulate: the portable C whatever the CPU, and it computes the product."""
    r = _run(PROBE, FASTBP_BF16="emulate")
    assert r.returncode == 0, r.stderr
    active, cpu, ok = r.stdout.split()
    assert active == "emulated" and ok == "True"
    assert cpu == _bf16.bf16_cpu_capability()


def test_env_auto_and_native():
    r = _run(PROBE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [_bf16.bf16_cpu_capability(), _bf16.bf16_cpu_capability(), "True"]
    r = _run(PROBE, FASTBP_BF16="native")
    if NATIVE:
        assert r.returncode == 0 and r.stdout.split()[0] == "avx512_bf16", r.stderr
    else:
        assert r.returncode != 0 and "lacks AVX512_BF16" in r.stderr


def test_env_rejects_unknown_values():
    r = _run("import fastbp._bf16", FASTBP_BF16="fast")
    assert r.returncode != 0 and "FASTBP_BF16='fast'" in r.stderr


def test_show_config_reports_bf16(capsys):
    cfg = fastbp.show_config(file=io.StringIO())
    assert cfg["bf16"] == _bf16.bf16_capability()
    assert cfg["bf16_cpu"] == _bf16.bf16_cpu_capability()
    r = _run("import fastbp.cli as c; c.main(['info'])", FASTBP_BF16="emulate")
    assert r.returncode == 0, r.stderr
    assert "bfloat16 products: emulated" in r.stdout


@needs_native
def test_peak_loops_run():
    assert _bf16.peak_chains() == 16
    assert np.isfinite(_bf16.peak_loop("dpbf16", 1000))
    assert np.isfinite(_bf16.peak_loop("fma", 1000))
    with pytest.raises(ValueError):
        _bf16.peak_loop("vnni", 10)


# ---- predict(precision="bf16"): the forward pass with bf16 products --------------------

def _net(sizes, seed=0, **kw):
    net = fastbp.Network(sizes, activation="relu", output="softmax", seed=seed, **kw)
    rng = np.random.default_rng(seed + 1)
    for b in net.biases:
        b[...] = rng.standard_normal(b.shape).astype(b.dtype) * 0.1
    return net


def _layer_reference(z, W, b):
    """The layer's pre-activation from its float32 input: the float64 product of the
    bf16-rounded input and weights, plus the bias; and the bound of a float32 sum of it."""
    za = bf16_round_ref(z).astype(np.float64)
    wa = bf16_round_ref(W).astype(np.float64)
    pre = za @ wa + b.astype(np.float64)
    tol = (z.shape[1] + 4) * EPS32 * (np.abs(za) @ np.abs(wa) + np.abs(b)) + 1e-30
    return pre, tol


def _softmax(pre):
    e = np.exp(pre - pre.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("which", MODES)
def test_predict_bf16_matches_reference(bf16_mode, which, rng):
    """A network of W1's sizes, rows not a multiple of the tile: each layer's output (by
    hidden_activations) is the reference layer applied to the engine's previous layer
    output, to float32 rounding; the whole forward pass is measurably not the float32 one."""
    _bf16.set_bf16_mode(which)
    net = _net([784, 512, 512, 10])
    X = rng.standard_normal((203, 784)).astype(np.float32)
    z = X
    for layer, (W, b) in enumerate(zip(net.weights[:-1], net.biases[:-1]), start=1):
        got = net.hidden_activations(X, layer, precision="bf16")
        pre, tol = _layer_reference(z, W, b)
        assert np.all(np.abs(got - np.maximum(pre, 0)) <= tol), layer
        z = got
    out = net.predict(X, precision="bf16")
    pre, tol = _layer_reference(z, net.weights[-1], net.biases[-1])
    np.testing.assert_allclose(out, _softmax(pre), rtol=0, atol=1e-5)
    f32 = net.predict(X)
    assert np.abs(out - f32).max() > 1e-4          # the products really were in bf16
    np.testing.assert_allclose(out, f32, rtol=0, atol=0.05)


@needs_native
def test_predict_bf16_emulated_equals_native(bf16_mode, rng):
    net = _net([64, 200, 30, 10], seed=3)
    X = rng.standard_normal((77, 64)).astype(np.float32)
    _bf16.set_bf16_mode("native")
    native = net.predict(X, precision="bf16")
    _bf16.set_bf16_mode("emulate")
    np.testing.assert_array_equal(net.predict(X, precision="bf16"), native)


def test_predict_bf16_threads_chunks_and_few_rows(rng):
    """The same bits at 1 and 2 threads, in chunks, and row by row (the few-rows path)."""
    net = _net([40, 96, 50, 10], seed=5)
    X = rng.standard_normal((70, 40)).astype(np.float32)
    with fastbp.num_threads(1):
        one = net.predict(X, precision="bf16")
    with fastbp.num_threads(2):
        np.testing.assert_array_equal(net.predict(X, precision="bf16"), one)
    np.testing.assert_array_equal(net.predict(X, chunk_size=16, precision="bf16"), one)
    np.testing.assert_array_equal(net.predict(X[3:4], precision="bf16"), one[3:4])
    assert net.predict(X[:0], precision="bf16").shape == (0, 10)


def test_predict_bf16_batch_norm(rng):
    """Batch norm (running statistics) and its bias after a bf16 product."""
    net = fastbp.Network([30, 64, 5], activation="tanh", output="identity", seed=2,
                         batch_norm=True)
    X = rng.standard_normal((50, 30)).astype(np.float32)
    got, f32 = net.predict(X, precision="bf16"), net.predict(X)
    np.testing.assert_allclose(got, f32, rtol=0, atol=0.05)
    assert np.abs(got - f32).max() > 1e-5


def test_predict_precision_is_checked(rng):
    net = _net([8, 6, 3])
    X = rng.standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_array_equal(net.predict(X, precision="float32"), net.predict(X))
    with pytest.raises(ValueError, match="precision must be"):
        net.predict(X, precision="fp8")
    net64 = fastbp.Network([8, 6, 3], dtype="float64", seed=0)
    with pytest.raises(ValueError, match="needs a float32 network"):
        net64.predict(X, precision="bf16")
    np.testing.assert_array_equal(net64.predict(X, precision="float64"), net64.predict(X))
