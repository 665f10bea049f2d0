/* cyprop's plain-C baseline for online SGD (batch size 1), built and run by `cyprop bench`.
 *
 * A fully connected network with sigmoid units in every layer and the quadratic cost,
 * trained one sample at a time with plain SGD.  Layer l maps size[l-1] inputs to size[l]
 * outputs through weights W[l], stored row-major as (size[l], size[l-1]), and biases b[l].
 * For each sample x with label t (one-hot):
 *
 *     forward   a[0] = x,  a[l] = sigmoid(W[l] a[l-1] + b[l])
 *     output    d[L] = (a[L] - t) * a[L] * (1 - a[L])
 *     backward  d[l-1] = (W[l]^T d[l]) * a[l-1] * (1 - a[l-1])      (l >= 2)
 *     step      W[l] -= lr * d[l] a[l-1]^T,  b[l] -= lr * d[l]
 *
 * It is written the way a careful C programmer writes it, with no intrinsics, so that it
 * shows what the compiler alone makes of the loops on this machine:
 *
 *   - dot products keep 16 independent partial sums, which the compiler can put in
 *     vector registers without -ffast-math (one running sum is a serial chain);
 *   - the backward pass of a layer and its weight step go through W[l] once: each weight
 *     is read, used for the delta of the layer below, and written back updated;
 *   - the first layer's step for one sample goes through W[1] together with the first
 *     layer's forward pass for the next sample.
 *
 * The maths is the same as the textbook loops, in the same order per sample.  The file is
 * package data (cyprop/bench/), compiled at run time with the C compiler found on the
 * machine: -DCYPROP_FLOAT32 builds it for float32, float64 otherwise.
 *
 * Usage:
 *   baseline bench REPEATS N SEED SIZE0 SIZE1 ... SIZEL
 *       Random data (X uniform in [0, 1), labels uniform), one warm-up epoch, then REPEATS
 *       timed epochs over the N samples in order (lr 0.1).  Prints one JSON line:
 *       {"times": [seconds per epoch...], "n": N, "checksum": sum of W[1]}.
 *   baseline train DIR N LR SIZE0 SIZE1 ... SIZEL
 *       Reads DIR/params.f64 (W[1], b[1], W[2], b[2], ... as float64), DIR/X.f64 (N rows)
 *       and DIR/y.i32, trains one epoch in order, writes DIR/out.f64 (same layout as
 *       params.f64).  The tests check it against NumPy.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef CYPROP_FLOAT32
typedef float real;
#define REAL_EXP expf
#else
typedef double real;
#define REAL_EXP exp
#endif

#define LANES 16      /* independent partial sums of a dot product */
#define MAX_LAYERS 8  /* sizes, input layer included */
#define ALIGN 64

typedef struct {
    int depth;                /* number of sizes: input layer, hidden layers, output layer */
    int size[MAX_LAYERS];
    real *w[MAX_LAYERS];      /* w[l], b[l] for l = 1 .. depth - 1 */
    real *b[MAX_LAYERS];
    real *act[MAX_LAYERS];    /* act[l] for l >= 1; the input row stands in for act[0] */
    real *delta[MAX_LAYERS];
} network;

/* ------------------------------------------------------------------ memory and time */
static void *blocks[4 * MAX_LAYERS + 8];
static int n_blocks = 0;

/* Zeroed memory aligned to 64 bytes (a cache line), freed by release_all(). */
static void *zeroed(size_t bytes) {
    if (n_blocks == (int)(sizeof blocks / sizeof blocks[0])) {
        fprintf(stderr, "too many allocations\n");
        exit(1);
    }
    unsigned char *raw = calloc(1, bytes + ALIGN);
    if (raw == NULL) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    blocks[n_blocks++] = raw;
    return raw + (ALIGN - (uintptr_t)raw % ALIGN);
}

static void release_all(void) {
    while (n_blocks > 0) free(blocks[--n_blocks]);
}

static double seconds_now(void) {
    struct timespec ts;
#if defined(CLOCK_MONOTONIC)
    clock_gettime(CLOCK_MONOTONIC, &ts);
#else
    timespec_get(&ts, TIME_UTC);
#endif
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ the maths */
static inline real sigmoid(real z) { return (real)1 / ((real)1 + REAL_EXP(-z)); }

static inline real dot(const real *restrict u, const real *restrict v, int n) {
    real part[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) part[k] += u[i + k] * v[i + k];
    for (int width = LANES / 2; width >= 1; width /= 2)
        for (int k = 0; k < width; k++) part[k] += part[k + width];
    real sum = part[0];
    for (; i < n; i++) sum += u[i] * v[i];
    return sum;
}

/* Layers first .. depth-1 for the input row x (act[first - 1] is already current). */
static void forward(network *net, const real *x, int first) {
    for (int l = first; l < net->depth; l++) {
        const int rows = net->size[l], cols = net->size[l - 1];
        const real *in = l == 1 ? x : net->act[l - 1];
        for (int j = 0; j < rows; j++)
            net->act[l][j] = sigmoid(net->b[l][j] + dot(net->w[l] + (size_t)j * cols, in, cols));
    }
}

static void output_delta(network *net, int label) {
    const int top = net->depth - 1;
    const real *a = net->act[top];
    real *d = net->delta[top];
    for (int j = 0; j < net->size[top]; j++) {
        real target = j == label ? (real)1 : (real)0;
        d[j] = (a[j] - target) * a[j] * ((real)1 - a[j]);
    }
}

/* Layers depth-1 .. 2: the delta of the layer below and the step, in one pass over W. */
static void backward_and_step(network *net, real lr) {
    for (int l = net->depth - 1; l >= 2; l--) {
        const int rows = net->size[l], cols = net->size[l - 1];
        const real *restrict in = net->act[l - 1];
        const real *restrict d = net->delta[l];
        real *restrict below = net->delta[l - 1];
        real *restrict bias = net->b[l];
        memset(below, 0, sizeof(real) * (size_t)cols);
        for (int j = 0; j < rows; j++) {
            const real dj = d[j], step = lr * dj;
            real *restrict row = net->w[l] + (size_t)j * cols;
            bias[j] -= step;
            for (int i = 0; i < cols; i++) {
                const real old = row[i];
                below[i] += old * dj;
                row[i] = old - step * in[i];
            }
        }
        for (int i = 0; i < cols; i++) below[i] *= in[i] * ((real)1 - in[i]);
    }
}

/* The first layer's step for input x, on its own (the last sample of an epoch). */
static void step_first(network *net, const real *restrict x, real lr) {
    const int rows = net->size[1], cols = net->size[0];
    const real *restrict d = net->delta[1];
    for (int j = 0; j < rows; j++) {
        const real step = lr * d[j];
        real *restrict row = net->w[1] + (size_t)j * cols;
        net->b[1][j] -= step;
        for (int i = 0; i < cols; i++) row[i] -= step * x[i];
    }
}

/* The first layer's step for input x, and its forward pass for the next input: each
 * updated weight is used at once for the next sample's dot product. */
static void step_first_then_forward(network *net, const real *restrict x,
                                    const real *restrict next, real lr) {
    const int rows = net->size[1], cols = net->size[0];
    const real *restrict d = net->delta[1];
    real *restrict out = net->act[1];
    for (int j = 0; j < rows; j++) {
        const real step = lr * d[j];
        real *restrict row = net->w[1] + (size_t)j * cols;
        const real bias = net->b[1][j] - step;
        net->b[1][j] = bias;
        real part[LANES] = {0};
        int i = 0;
        for (; i + LANES <= cols; i += LANES)
            for (int k = 0; k < LANES; k++) {
                const real updated = row[i + k] - step * x[i + k];
                row[i + k] = updated;
                part[k] += updated * next[i + k];
            }
        for (int width = LANES / 2; width >= 1; width /= 2)
            for (int k = 0; k < width; k++) part[k] += part[k + width];
        real sum = part[0];
        for (; i < cols; i++) {
            const real updated = row[i] - step * x[i];
            row[i] = updated;
            sum += updated * next[i];
        }
        out[j] = sigmoid(bias + sum);
    }
}

/* One epoch of online SGD over the n rows of X, in order. */
static void epoch(network *net, const real *X, const int32_t *y, int n, real lr) {
    const int cols = net->size[0];
    if (n <= 0) return;
    forward(net, X, 1);
    for (int k = 0; k < n; k++) {
        const real *x = X + (size_t)k * cols;
        output_delta(net, y[k]);
        backward_and_step(net, lr);
        if (k + 1 < n) {
            step_first_then_forward(net, x, x + cols, lr);
            forward(net, x + cols, 2);
        } else {
            step_first(net, x, lr);
        }
    }
}

/* ---------------------------------------------------------------------- set-up */
static void build(network *net, int depth, const int *size) {
    memset(net, 0, sizeof *net);
    net->depth = depth;
    for (int l = 0; l < depth; l++) {
        net->size[l] = size[l];
        if (l == 0) continue;
        net->w[l] = zeroed(sizeof(real) * (size_t)size[l] * (size_t)size[l - 1]);
        net->b[l] = zeroed(sizeof(real) * (size_t)size[l]);
        net->act[l] = zeroed(sizeof(real) * (size_t)size[l]);
        net->delta[l] = zeroed(sizeof(real) * (size_t)size[l]);
    }
}

/* splitmix64: seeded, the same numbers on every platform. */
static uint64_t rng_state;

static double uniform(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int parse_sizes(int argc, char **argv, int *size) {
    int depth = argc;
    if (depth < 2 || depth > MAX_LAYERS) {
        fprintf(stderr, "give 2 to %d layer sizes\n", MAX_LAYERS);
        return 0;
    }
    for (int l = 0; l < depth; l++) {
        size[l] = atoi(argv[l]);
        if (size[l] < 1) {
            fprintf(stderr, "layer sizes must be positive\n");
            return 0;
        }
    }
    return depth;
}

/* -------------------------------------------------------------------- commands */
static int bench(int repeats, int n, unsigned long long seed, int depth, const int *size) {
    network net;
    build(&net, depth, size);
    real *X = zeroed(sizeof(real) * (size_t)n * (size_t)size[0]);
    int32_t *y = zeroed(sizeof(int32_t) * (size_t)n);
    double *times = zeroed(sizeof(double) * (size_t)repeats);
    rng_state = seed;
    for (size_t i = 0; i < (size_t)n * (size_t)size[0]; i++) X[i] = (real)uniform();
    for (int k = 0; k < n; k++) y[k] = (int32_t)(uniform() * size[depth - 1]) % size[depth - 1];
    for (int l = 1; l < depth; l++) {
        const double scale = 1.0 / sqrt((double)size[l - 1]);
        for (size_t i = 0; i < (size_t)size[l] * (size_t)size[l - 1]; i++)
            net.w[l][i] = (real)(scale * (2.0 * uniform() - 1.0));
    }
    epoch(&net, X, y, n, (real)0.1);  /* warm-up */
    for (int r = 0; r < repeats; r++) {
        const double start = seconds_now();
        epoch(&net, X, y, n, (real)0.1);
        times[r] = seconds_now() - start;
    }
    double checksum = 0;
    for (size_t i = 0; i < (size_t)size[1] * (size_t)size[0]; i++) checksum += net.w[1][i];
    printf("{\"times\": [");
    for (int r = 0; r < repeats; r++) printf("%s%.9f", r ? ", " : "", times[r]);
    printf("], \"n\": %d, \"checksum\": %.17g, \"real_bytes\": %d}\n", n, checksum,
           (int)sizeof(real));
    return 0;
}

static int read_reals(const char *dir, const char *name, real *dst, size_t count) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) { perror(path); return 0; }
    int ok = 1;
    for (size_t i = 0; i < count && ok; i++) {
        double v;
        ok = fread(&v, sizeof v, 1, f) == 1;
        dst[i] = (real)v;
    }
    fclose(f);
    if (!ok) fprintf(stderr, "%s: too short\n", path);
    return ok;
}

static int train(const char *dir, int n, double lr, int depth, const int *size) {
    network net;
    build(&net, depth, size);
    real *X = zeroed(sizeof(real) * (size_t)n * (size_t)size[0]);
    int32_t *y = zeroed(sizeof(int32_t) * (size_t)n);
    char path[4096];
    snprintf(path, sizeof path, "%s/params.f64", dir);
    FILE *f = fopen(path, "rb");
    if (f == NULL) { perror(path); return 1; }
    for (int l = 1; l < depth; l++) {
        size_t nw = (size_t)size[l] * (size_t)size[l - 1];
        for (size_t i = 0; i < nw + (size_t)size[l]; i++) {
            double v;
            if (fread(&v, sizeof v, 1, f) != 1) {
                fprintf(stderr, "%s: too short\n", path);
                fclose(f);
                return 1;
            }
            if (i < nw) net.w[l][i] = (real)v;
            else net.b[l][i - nw] = (real)v;
        }
    }
    fclose(f);
    if (!read_reals(dir, "X.f64", X, (size_t)n * (size_t)size[0])) return 1;
    snprintf(path, sizeof path, "%s/y.i32", dir);
    f = fopen(path, "rb");
    if (f == NULL || fread(y, sizeof(int32_t), (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: cannot read %d labels\n", path, n);
        if (f) fclose(f);
        return 1;
    }
    fclose(f);
    epoch(&net, X, y, n, (real)lr);
    snprintf(path, sizeof path, "%s/out.f64", dir);
    f = fopen(path, "wb");
    if (f == NULL) { perror(path); return 1; }
    for (int l = 1; l < depth; l++) {
        size_t nw = (size_t)size[l] * (size_t)size[l - 1];
        for (size_t i = 0; i < nw + (size_t)size[l]; i++) {
            double v = i < nw ? (double)net.w[l][i] : (double)net.b[l][i - nw];
            fwrite(&v, sizeof v, 1, f);
        }
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    int size[MAX_LAYERS], depth, status = 2;
    if (argc >= 7 && strcmp(argv[1], "bench") == 0) {
        int repeats = atoi(argv[2]), n = atoi(argv[3]);
        if (repeats >= 1 && n >= 1 && (depth = parse_sizes(argc - 5, argv + 5, size)))
            status = bench(repeats, n, strtoull(argv[4], NULL, 10), depth, size);
    } else if (argc >= 7 && strcmp(argv[1], "train") == 0) {
        int n = atoi(argv[3]);
        if (n >= 1 && (depth = parse_sizes(argc - 5, argv + 5, size)))
            status = train(argv[2], n, atof(argv[4]), depth, size);
    }
    if (status == 2)
        fprintf(stderr, "usage: %s bench REPEATS N SEED SIZE0 ... SIZEL\n"
                        "       %s train DIR N LR SIZE0 ... SIZEL\n", argv[0], argv[0]);
    release_all();
    return status;
}
