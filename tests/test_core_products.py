"""The blocks path's matrix products, in every kernel: on AVX-512 the module's own
(csrc/cyprop_products.h), elsewhere the BLAS's.

* ``py_product`` runs each product as the blocks paths call it; its results match
  NumPy's in float64 within a few units of rounding of the sums, for every shape the
  tiles meet (one row or unit, a partial tile of rows, units or vector lanes, W2's and
  W3's layers), with strided rows (views of wider arrays, as the parts of a layer are).
* Nothing outside the result is written, and a result with beta 0 is not read (it
  may hold NaN, as fresh scratch does).
* Each output is the same sum in the same order wherever its tile falls: a block of
  units computed on its own gives bit for bit the same values as within the whole
  layer (what keeps the results independent of the parts and the thread count).
"""

import itertools

import numpy as np
import pytest

from cyprop import _compiled

ISAS = ("baseline", "avx2", "avx512")
# relative to the sum of |terms|: float32 sums of up to 784 terms, in any order
TOL = {"float64": 1e-13, "float32": 1e-5}
ROWS = (1, 3, 4, 5, 32, 129)
UNITS = (1, 6, 7, 8, 10, 30, 100)
DEPTHS = (1, 15, 16, 17, 48, 49, 64, 784)


def kernel(instruction_set):
    if instruction_set not in _compiled.KERNELS:
        assert instruction_set != "baseline", "the portable kernel must always be there"
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    core = _compiled.KERNELS[instruction_set]
    if not core.has_blas() and not core.has_own_products():
        pytest.skip("no BLAS (SciPy) for this kernel's products")
    return core


def strided(rng, shape, dtype, pad=3):
    """A random array with rows `pad` elements apart more than their length."""
    wide = rng.standard_normal((shape[0], shape[1] + pad)).astype(dtype)
    return wide[:, :shape[1]]


def expected(product, a, b, c0, beta, alpha=1.0):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if product == "rows_dot_rows":   # beta 0 or 1: set, or add to c
        return beta * c0 + a64 @ b64.T, np.abs(a64) @ np.abs(b64).T + beta * np.abs(c0)
    if product == "rows_t_times":
        base = beta * c0 if beta else 0
        return (base + alpha * (a64.T @ b64),
                abs(alpha) * (np.abs(a64).T @ np.abs(b64)) + abs(beta * c0))
    return a64 @ b64, np.abs(a64) @ np.abs(b64)


def operands(product, rng, m, n, k, dtype):
    """a, b and the result c for m rows, n units (or sums), depth k."""
    if product == "rows_dot_rows":        # (m, k) by (n, k) -> (m, n)
        return strided(rng, (m, k), dtype), strided(rng, (n, k), dtype), strided(rng, (m, n), dtype)
    if product == "rows_t_times":         # (m, n).T by (m, k) -> (n, k)
        return strided(rng, (m, n), dtype), strided(rng, (m, k), dtype), strided(rng, (n, k), dtype)
    return strided(rng, (m, n), dtype), strided(rng, (n, k), dtype), strided(rng, (m, k), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("product", ["rows_dot_rows", "rows_t_times", "rows_times"])
@pytest.mark.parametrize("instruction_set", ISAS)
def test_products_match_numpy(instruction_set, product, dtype):
    check_products(kernel(instruction_set), product, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("product", ["rows_dot_rows", "rows_t_times", "rows_times"])
def test_without_blas_the_own_products_take_every_shape(product, dtype, without_blas):
    # (with a BLAS, the small shapes go to it: here the own kernels take them all)
    core = _compiled.KERNELS.get("avx512")
    if core is None or not core.has_own_products():
        pytest.skip("no kernel with its own products for this build or CPU")
    check_products(core, product, dtype)


def check_products(core, product, dtype):
    """The product on every shape of ROWS x UNITS x DEPTHS against NumPy, with each
    alpha and beta its callers use, leaving the padding beside c's rows alone."""
    rng = np.random.default_rng(7)
    # (beta, alpha): rows_t_times with an alpha is plain SGD's step of W_0, keep and -rate
    scalars = {"rows_dot_rows": ((0.0, 1.0), (1.0, 1.0)),
               "rows_t_times": ((0.0, 1.0), (1.0, 1.0), (0.5, 1.0), (1.0, -0.03),
                                (0.97, -0.5), (0.0, 2.0)),
               "rows_times": ((0.0, 1.0),)}[product]
    for m, n, k in itertools.product(ROWS, UNITS, DEPTHS):
        for beta, alpha in scalars:
            a, b, c = operands(product, rng, m, n, k, dtype)
            if beta == 0:
                c[...] = np.nan          # not to be read
            c0 = c.astype(np.float64)
            whole = c.base.copy()        # the padding beside each row must stay
            core.py_product(product, a, b, c, beta, alpha)
            want, scale = expected(product, a, b, np.nan_to_num(c0), beta, alpha)
            err = np.abs(c - want) / (scale + 1e-300)
            assert np.all(err <= TOL[dtype]), (
                f"{product} {m}x{n}x{k} beta={beta} alpha={alpha}: error {err.max():.2g} "
                "of the terms")
            pad = np.ones(whole.shape, bool)
            pad[:, :c.shape[1]] = False
            np.testing.assert_array_equal(c.base[pad], whole[pad])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("instruction_set", ISAS)
def test_rows_dot_rows_on_both_sides_of_its_loop_order(instruction_set, dtype):
    """The own rows_dot_rows keeps a tile of 6 rows of W in L1 while X streams past when
    those rows fit in 24 KB (depth 1024 in float32, 512 in float64), else streams W
    past tiles of X: both orders, at and around the switch, match NumPy."""
    core = kernel(instruction_set)
    rng = np.random.default_rng(11)
    switch = 24576 // (6 * np.dtype(dtype).itemsize)
    for k in (switch - 1, switch, switch + 1, 2 * switch + 5):
        for m, n in ((37, 100), (4, 6), (5, 49)):
            a, b, c = operands("rows_dot_rows", rng, m, n, k, dtype)
            core.py_product("rows_dot_rows", a, b, c, 0.0, 1.0)
            want, scale = expected("rows_dot_rows", a, b, 0, 0.0)
            # (float32 sums of up to 2k terms: the tolerance of 784 scaled)
            tol = TOL[dtype] * max(1.0, k / 784)
            assert np.all(np.abs(c - want) / scale <= tol), (m, n, k)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("instruction_set", ISAS)
def test_a_part_of_a_layer_gives_the_same_bits(instruction_set, dtype):
    """Units u0 .. u1-1 of a layer, computed as a part (as threads split a layer), are
    bit for bit those of the whole layer: each sum's order does not depend on where its
    tile falls."""
    core = kernel(instruction_set)
    if not core.has_own_products():
        pytest.skip("the BLAS's products: their order is the BLAS's business")
    rng = np.random.default_rng(3)
    x, w = rng.random((37, 784)).astype(dtype), rng.random((100, 784)).astype(dtype)
    d = rng.random((37, 100)).astype(dtype)
    z_whole = np.zeros((37, 100), dtype)
    core.py_product("rows_dot_rows", x, w, z_whole)
    g_whole = np.zeros((100, 784), dtype)
    core.py_product("rows_t_times", d, x, g_whole)
    for u0, u1 in [(0, 24), (24, 56), (56, 100), (13, 14), (50, 99)]:
        z = np.zeros((37, 100), dtype)
        core.py_product("rows_dot_rows", x, w[u0:u1], z[:, u0:u1])
        np.testing.assert_array_equal(z[:, u0:u1], z_whole[:, u0:u1])
        g = np.zeros((100, 784), dtype)
        core.py_product("rows_t_times", d[:, u0:u1], x, g[u0:u1])
        np.testing.assert_array_equal(g[u0:u1], g_whole[u0:u1])


def test_the_avx512_kernel_has_its_own_products():
    if "avx512" not in _compiled.KERNELS:
        pytest.skip("no avx512 kernel for this build or CPU")
    assert _compiled.KERNELS["avx512"].has_own_products()
    assert not _compiled.KERNELS["baseline"].has_own_products()


def test_bad_shapes_are_refused():
    core = _compiled.KERNELS["baseline"]
    a = np.zeros((3, 4))
    with pytest.raises(ValueError, match="do not fit"):
        core.py_product("rows_dot_rows", a, np.zeros((5, 3)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="not in tuple|rows_dot_rows|PRODUCTS"):
        core.py_product("gemm", a, a, a)
