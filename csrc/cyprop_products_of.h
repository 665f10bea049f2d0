/* The kernels of cyprop_products.h for one dtype: included once per dtype, with REAL
   (the scalar), VEC (its 512-bit vector), MASK, LANES (scalars per vector), V(op) (the
   intrinsic _mm512_op_ps or _pd) and OF(name) (the dtype's name: name_f, name_d)
   defined; it undefines them at its end. */

/* Z[r, j] += X[r, :] . W[j, :] for a tile of RT <= 4 rows and JT <= 6 units (compile-time
   constants once inlined: the accumulators live in registers). */
CYPROP_INLINE void OF(cyprop_dot_tile)(const int RT, const int JT, int K,
                                       const REAL* x, int ldx, const REAL* w, int ldw,
                                       REAL* z, int ldz) {
    VEC acc[4][6], xr[4], wj;
    int k, r, j;
    CYPROP_UNROLL for (r = 0; r < RT; r++)
        CYPROP_UNROLL for (j = 0; j < JT; j++) acc[r][j] = V(setzero)();
    for (k = 0; k + LANES <= K; k += LANES) {
        CYPROP_UNROLL for (r = 0; r < RT; r++) xr[r] = V(loadu)(x + (size_t)r * ldx + k);
        CYPROP_UNROLL for (j = 0; j < JT; j++) {
            wj = V(loadu)(w + (size_t)j * ldw + k);
            CYPROP_UNROLL for (r = 0; r < RT; r++) acc[r][j] = V(fmadd)(xr[r], wj, acc[r][j]);
        }
    }
    if (k < K) {   /* the last K % LANES: masked loads read zeros past the end */
        const MASK m = (MASK)((1u << (K - k)) - 1);
        CYPROP_UNROLL for (r = 0; r < RT; r++) xr[r] = V(maskz_loadu)(m, x + (size_t)r * ldx + k);
        CYPROP_UNROLL for (j = 0; j < JT; j++) {
            wj = V(maskz_loadu)(m, w + (size_t)j * ldw + k);
            CYPROP_UNROLL for (r = 0; r < RT; r++) acc[r][j] = V(fmadd)(xr[r], wj, acc[r][j]);
        }
    }
    CYPROP_UNROLL for (r = 0; r < RT; r++) OF(cyprop_add_sums)(JT, acc[r], z + (size_t)r * ldz);
}

#define CYPROP_DOT_TILE(rt, jt) \
    case jt: OF(cyprop_dot_tile)(rt, jt, K, x + (size_t)r * ldx, ldx, w + (size_t)j * ldw, \
                                 ldw, z + (size_t)r * ldz + j, ldz); break;
#define CYPROP_DOT_TILES(rt) switch (j1 - j < 6 ? j1 - j : 6) { \
    CYPROP_DOT_TILE(rt, 6) CYPROP_DOT_TILE(rt, 5) CYPROP_DOT_TILE(rt, 4) \
    CYPROP_DOT_TILE(rt, 3) CYPROP_DOT_TILE(rt, 2) CYPROP_DOT_TILE(rt, 1) }

/* Z += X @ W.T: z[r, j] += x[r, :K] . w[j, :K] for r < rows, j < units.  W's rows go in
   blocks, each meeting every tile of 4 rows of X: blocks of 48 rows of W (L2) while each
   tile of X stays in L1; of 6 where 6 rows of W fit in half of L1 (a block is then one
   tile of W, which stays there while the rows of X stream past: 4 loads from L2 per 24
   multiply-adds instead of 6).  The same tiles and sums either way. */
static void OF(cyprop_rows_dot_rows)(int rows, int units, int K, const REAL* x, int ldx,
                                     const REAL* w, int ldw, REAL* z, int ldz) {
    const int block = (size_t)6 * K * sizeof(REAL) <= 24576 ? 6 : 48;
    int j0, j1, j, r;
    for (j0 = 0; j0 < units; j0 += block) {
        j1 = units < j0 + block ? units : j0 + block;
        for (r = 0; r < rows; r += 4) {
            for (j = j0; j < j1; j += 6) {
                switch (rows - r < 4 ? rows - r : 4) {
                    case 4: CYPROP_DOT_TILES(4) break;
                    case 3: CYPROP_DOT_TILES(3) break;
                    case 2: CYPROP_DOT_TILES(2) break;
                    default: CYPROP_DOT_TILES(1) break;
                }
            }
        }
    }
}

#undef CYPROP_DOT_TILE
#undef CYPROP_DOT_TILES

/* c[o, :] = beta c[o, :] + alpha sum_s a(s, o) b[s, :] over n_sums s, for a tile of
   OT <= 8 outputs and KV <= 3 vectors of k (the last one masked by `last`). */
CYPROP_INLINE void OF(cyprop_outer_tile)(const int OT, const int KV, int n_sums,
                                         const REAL* a, ptrdiff_t a_s, ptrdiff_t a_o,
                                         const REAL* b, int ldb, REAL* c, int ldc,
                                         REAL alpha, REAL beta, MASK last) {
    VEC acc[8][3], bv[3], as;
    int s, o, v;
    CYPROP_UNROLL for (o = 0; o < OT; o++)
        CYPROP_UNROLL for (v = 0; v < KV; v++) acc[o][v] = V(setzero)();
    for (s = 0; s < n_sums; s++) {
        CYPROP_UNROLL for (v = 0; v < KV; v++)
            bv[v] = v < KV - 1 ? V(loadu)(b + (size_t)s * ldb + v * LANES)
                               : V(maskz_loadu)(last, b + (size_t)s * ldb + v * LANES);
        CYPROP_UNROLL for (o = 0; o < OT; o++) {
            as = V(set1)(a[s * a_s + o * a_o]);
            CYPROP_UNROLL for (v = 0; v < KV; v++) acc[o][v] = V(fmadd)(as, bv[v], acc[o][v]);
        }
    }
    CYPROP_UNROLL for (o = 0; o < OT; o++) {
        CYPROP_UNROLL for (v = 0; v < KV; v++) {
            REAL* co = c + (size_t)o * ldc + v * LANES;
            const MASK m = v < KV - 1 ? (MASK)-1 : last;
            acc[o][v] = V(mul)(V(set1)(alpha), acc[o][v]);   /* exact for alpha 1 */
            if (beta != 0)   /* beta == 0: c is not read (it may hold anything) */
                acc[o][v] = V(fmadd)(V(set1)(beta), V(maskz_loadu)(m, co), acc[o][v]);
            V(mask_storeu)(co, m, acc[o][v]);
        }
    }
}

#define CYPROP_OUTER_TILE(ot, kv) \
    case ot: OF(cyprop_outer_tile)(ot, kv, n_sums, a + o * a_o, a_s, a_o, b + k, ldb, \
                                   c + (size_t)o * ldc + k, ldc, alpha, beta, last); break;
#define CYPROP_OUTER_TILES(kv) switch (n_out - o < 8 ? n_out - o : 8) { \
    CYPROP_OUTER_TILE(8, kv) CYPROP_OUTER_TILE(7, kv) CYPROP_OUTER_TILE(6, kv) \
    CYPROP_OUTER_TILE(5, kv) CYPROP_OUTER_TILE(4, kv) CYPROP_OUTER_TILE(3, kv) \
    CYPROP_OUTER_TILE(2, kv) CYPROP_OUTER_TILE(1, kv) }

/* C = beta C + alpha sum_s a_s b_s^T: c[o, k] = beta c[o, k] + alpha sum_s a[s a_s + o a_o]
   b[s, k] for o < n_out, k < K, s < n_sums.  The gradient D.T @ X is a = D (a_s its row length,
   a_o 1), b = X; the deltas below D @ W are a = D (a_s 1, a_o its row length), b = W. */
static void OF(cyprop_sum_outer)(int n_sums, int n_out, int K, const REAL* a, ptrdiff_t a_s,
                                 ptrdiff_t a_o, const REAL* b, int ldb, REAL* c, int ldc,
                                 REAL alpha, REAL beta) {
    int k, o, kn;
    MASK last;
    /* 3 vectors of k at a time: those columns of b (L1) meet every output */
    for (k = 0; k < K; k += 3 * LANES) {
        kn = K - k < 3 * LANES ? K - k : 3 * LANES;
        last = kn % LANES ? (MASK)((1u << (kn % LANES)) - 1) : (MASK)-1;
        for (o = 0; o < n_out; o += 8) {
            switch ((kn + LANES - 1) / LANES) {
                case 3: CYPROP_OUTER_TILES(3) break;
                case 2: CYPROP_OUTER_TILES(2) break;
                default: CYPROP_OUTER_TILES(1) break;
            }
        }
    }
}
#undef CYPROP_OUTER_TILE
#undef CYPROP_OUTER_TILES

#undef REAL
#undef VEC
#undef MASK
#undef LANES
#undef V
#undef OF
