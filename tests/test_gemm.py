"""fastbp's own small-product sgemm (_gemm.h) against NumPy, and where it runs."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp import _blas, _engine
import reference as ref

N, T = _blas.BLAS_Trans.NoTrans, _blas.BLAS_Trans.Trans


def _supported(kernel):
    old = fastbp.get_gemm_kernel()
    try:
        fastbp.set_gemm_kernel(kernel)
        return True
    except ValueError:
        return False
    finally:
        fastbp.set_gemm_kernel(old)


OWN = [k for k in ("avx512", "avx2") if _supported(k)]
needs_own = pytest.mark.skipif(not OWN, reason="no own kernel on this CPU/build")


@pytest.fixture
def kernel():
    """Restore the process-wide kernel after a test that changes it."""
    old = fastbp.get_gemm_kernel()
    yield
    fastbp.set_gemm_kernel(old)


def _operands(rng, ta, tb, m, n, k, pad=0):
    """op(A) (m x k), op(B) (k x n), C (m x n), each stored with `pad` extra columns (rows
    strided, as in a column block of a larger matrix)."""
    def mat(r, c):
        return rng.standard_normal((r, c + pad)).astype(np.float32)[:, :c]
    A = mat(k, m) if ta == T else mat(m, k)
    B = mat(n, k) if tb == T else mat(k, n)
    return A, B, mat(m, n)


def _want(ta, tb, A, B, C, alpha, beta):
    opa = (A.T if ta == T else A).astype(np.float64)
    opb = (B.T if tb == T else B).astype(np.float64)
    return alpha * opa @ opb + (beta * C.astype(np.float64) if beta != 0 else 0)


SHAPES = [(1, 1, 1), (1, 33, 1), (7, 5, 3), (8, 32, 16), (9, 17, 300), (13, 64, 257),
          (37, 45, 129), (64, 128, 128), (100, 10, 64), (3, 100, 513), (17, 47, 31)]


@needs_own
@pytest.mark.parametrize("isa", OWN)
@pytest.mark.parametrize("ta", [N, T])
@pytest.mark.parametrize("tb", [N, T])
@pytest.mark.parametrize("pad", [0, 3])
def test_own_kernel_matches_numpy(kernel, isa, ta, tb, pad):
    """Every form, ragged edges (m % tile rows, n % vector width), k beyond one k block
    (256), strided rows, and the alpha/beta cases; beta == 0 never reads C (NaN there)."""
    fastbp.set_gemm_kernel(isa)
    rng = np.random.default_rng(1)
    for m, n, k in SHAPES:
        for alpha, beta in [(1.0, 0.0), (0.5, 2.0), (-1.0, 1.0), (2.0, -0.25)]:
            A, B, C = _operands(rng, ta, tb, m, n, k, pad)
            if beta == 0:
                C[...] = np.nan
            want = _want(ta, tb, A, B, C, alpha, beta)
            _blas.gemm_memview(ta, tb, A, B, C, alpha, beta, small=True)
            scale = np.abs(A).max() * np.abs(B).max() * k * abs(alpha) + 2 * abs(beta) * 4
            np.testing.assert_allclose(C, want, rtol=0, atol=1e-6 * scale,
                                       err_msg=f"{isa} {ta} {tb} {(m, n, k)} {alpha} {beta}")


@needs_own
@pytest.mark.parametrize("isa", OWN)
@pytest.mark.parametrize("ta", [N, T])
@pytest.mark.parametrize("tb", [N, T])
def test_own_kernel_blocks_are_bit_identical_to_the_whole(kernel, isa, ta, tb):
    """A product split into row or column blocks (as fastbp's threads split it) gives the
    very same bits as the product done whole."""
    fastbp.set_gemm_kernel(isa)
    rng = np.random.default_rng(2)
    m, n, k = 45, 77, 300
    A, B, _ = _operands(rng, ta, tb, m, n, k)
    whole = np.zeros((m, n), np.float32)
    _blas.gemm_memview(ta, tb, A, B, whole, small=True)
    for cut in (1, 16, 31):
        rows = np.zeros((m, n), np.float32)
        cols = np.zeros((m, n), np.float32)
        for r0, r1 in ((0, cut), (cut, m)):
            a = A[r0:r1] if ta == N else A[:, r0:r1]
            _blas.gemm_memview(ta, tb, a, B, rows[r0:r1], small=True)
        for c0, c1 in ((0, cut), (cut, n)):
            b = B[:, c0:c1] if tb == N else B[c0:c1]
            _blas.gemm_memview(ta, tb, A, b, cols[:, c0:c1], small=True)
        assert np.array_equal(rows, whole) and np.array_equal(cols, whole), cut


@needs_own
@pytest.mark.parametrize("isa", OWN)
@pytest.mark.parametrize("n", [1, 10, 16, 64, 77, 300, 512])
@pytest.mark.parametrize("k", [1, 3, 256, 300, 784])
def test_the_rows_kernel_for_a_few_rows_equals_numpy_and_the_blocked_kernels_bits(kernel, isa,
                                                                                  n, k):
    """Products of 1 to 4 rows (predict on a few samples) go through the rows kernel: right
    to float rounding, and bit for bit the sums the blocked kernel gives the same rows in a
    larger product, so a row's output does not depend on which kernel it landed on."""
    fastbp.set_gemm_kernel(isa)
    rng = np.random.default_rng(n * 1000 + k)
    A = rng.standard_normal((6, k)).astype(np.float32)
    B = rng.standard_normal((k, n + 3)).astype(np.float32)[:, :n]      # strided rows too
    whole = np.zeros((6, n), np.float32)
    _blas.gemm_memview(N, N, A, B, whole, small=True)      # 6 rows: the blocked kernel
    for m in (1, 2, 3, 4):
        C = np.full((m, n), np.nan, np.float32)            # beta 0: never read
        _blas.gemm_memview(N, N, A[:m], B, C, small=True)
        np.testing.assert_allclose(C, A[:m].astype(np.float64) @ B, rtol=1e-4,
                                   atol=1e-4 * np.sqrt(k))
        assert np.array_equal(C, whole[:m]), (m, n, k)


def test_float64_products_always_use_blas(kernel):
    """The own kernel is float32 only: float64 gives BLAS's result whatever the setting."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((64, 128))
    B = rng.standard_normal((128, 128))
    C = np.zeros((64, 128))
    _blas.gemm_memview(N, N, A, B, C, small=True)
    np.testing.assert_allclose(C, A @ B, rtol=1e-12, atol=1e-12)


def test_set_gemm_kernel_checks_its_argument(kernel):
    with pytest.raises(ValueError, match="name"):
        fastbp.set_gemm_kernel("sse2")
    with pytest.raises(TypeError, match="name"):
        fastbp.set_gemm_kernel(None)
    old = fastbp.set_gemm_kernel("blas")
    assert fastbp.get_gemm_kernel() == "blas"
    assert fastbp.set_gemm_kernel("auto") == "blas"
    assert fastbp.get_gemm_kernel() in ("avx512", "avx2", "blas")
    assert old in ("avx512", "avx2", "blas")
    if "avx512" not in OWN:
        with pytest.raises(ValueError, match="supports up to"):
            fastbp.set_gemm_kernel("avx512")


@pytest.mark.parametrize("value, want", [("0", "blas"), ("blas", "blas"),
                                         ("auto,always", None), ("bogus", "error")])
def test_environment_variable(value, want):
    env = dict(os.environ, FASTBP_SMALL_GEMM=value)
    run = subprocess.run([sys.executable, "-c", "import fastbp; print(fastbp.get_gemm_kernel())"],
                         env=env, capture_output=True, text=True)
    if want == "error":
        assert run.returncode != 0 and "FASTBP_SMALL_GEMM" in run.stderr
    else:
        assert run.returncode == 0, run.stderr
        got = run.stdout.split()[-1]
        assert got == (want or ("blas" if not OWN else OWN[0]))


def _deep_net(seed=0):
    # 128-wide layers at batch 64: the products the own kernel is chosen for
    return fastbp.Network([128] + [128] * 3 + [10], activation="tanh", output="softmax",
                          seed=seed)


@needs_own
@pytest.mark.parametrize("n_threads", [1, 2])
def test_training_gradients_with_own_kernel_match_reference(kernel, n_threads):
    """Gradients and inputs gradients of a network whose products run on the own kernel
    (at 2 threads: batch shards) against the float64 reference."""
    fastbp.set_gemm_kernel("auto")
    net = _deep_net()
    rng = np.random.default_rng(4)
    X = rng.standard_normal((64, 128)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    with fastbp.num_threads(n_threads):
        loss, g = net.loss_and_gradients(X, y, loss="cross_entropy")
    E, dW, db, dX = ref.loss_and_gradients(net.weights, net.biases, list(net.activations),
                                           X, y, loss="cross_entropy")
    assert loss == pytest.approx(E, rel=1e-5)
    for got, want in zip(g.weights + g.biases, dW + db):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(g.inputs, dX, rtol=1e-3, atol=1e-6)


@needs_own
@pytest.mark.parametrize("n_threads", [1, 2])
def test_training_with_own_kernel_follows_blas_training(kernel, n_threads):
    """Two epochs of SGD momentum on the own kernel and on BLAS end at the same parameters
    up to float rounding (often bit-identical: both sum each entry in k order by FMA), and
    the own kernel really runs every product of the hidden layers (3 per layer and batch)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((1024, 128)).astype(np.float32)
    y = rng.integers(0, 10, 1024)
    ends = {}
    calls = {}
    for name in ("auto", "blas"):
        fastbp.set_gemm_kernel(name)
        net = _deep_net()
        before = _blas.small_gemm_calls()
        fastbp.Trainer(net, loss="cross_entropy", optimizer="sgd", lr=0.05, momentum=0.9,
                       batch_size=64, n_threads=n_threads, seed=0).fit(X, y, epochs=2)
        calls[name] = _blas.small_gemm_calls() - before
        ends[name] = np.concatenate([w.ravel() for w in net.weights]
                                    + [b.ravel() for b in net.biases])
    np.testing.assert_allclose(ends["auto"], ends["blas"], rtol=0, atol=2e-4)
    # per batch and shard: forward and dW of the 3 hidden layers, the input gradients of
    # hidden layers 2 and 3; the 10-wide output layer's products stay with BLAS (n < 32,
    # and its input gradient, 64 x 128 x 10, is below 2^18 multiply-adds) -- unless
    # FASTBP_SMALL_GEMM=always sends all 4 + 4 + 3 products of a step to the own kernel
    always = "always" in os.environ.get("FASTBP_SMALL_GEMM", "")
    shards = _engine.batch_shards(net.plan, 64, n_threads)
    assert calls == {"auto": (11 if always else 8) * 2 * (1024 // 64) * shards, "blas": 0}
