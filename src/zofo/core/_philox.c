/* The CPU kernel of zofo.core.philox: Philox4x32-10 words and their integer fixed-point normals, written
 * straight into a float32 or float64 buffer. It computes exactly what zofo/core/philox.py computes with
 * torch ops (integers until one final rounding), only without the intermediate tensors; the tests
 * compare the two bit for bit. The GIL is released, so Python threads can fill disjoint parts. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define SUB 6

/* Q(w) in units of 2^-40, w in [0, 2^31): a knot each for w < 64, then 64 linear pieces per octave. */
static inline int64_t magnitude(uint32_t w, const int64_t *table) {
    if (w < (1u << SUB)) return table[2 * w];
    int octave = 31 - __builtin_clz(w);
    int shift = octave - SUB;
    uint32_t mant = (w >> shift) & ((1u << SUB) - 1);
    int seg = (octave - (SUB - 1)) * (1 << SUB) + (int)mant;
    int64_t offset = (int64_t)w - ((int64_t)((1u << SUB) + mant) << shift);
    return table[2 * seg] - ((table[2 * seg + 1] * offset) >> shift);
}

static inline void store(void *out, int elsize, Py_ssize_t i, int64_t fixed) {
    double v = (double)fixed * 0x1p-40; /* exact: |fixed| < 2^53, scale a power of two */
    if (elsize == 4)
        ((float *)out)[i] = (float)v;
    else
        ((double *)out)[i] = v;
}

/* One value: kind 0 is the normal, kind 1 the normal truncated to the w range [w_lo, w_lo + span)
 * with magnitudes capped at cap. */
static inline int64_t value(uint32_t word, const int64_t *table, int kind,
                            uint64_t w_lo, uint64_t span, int64_t cap) {
    int64_t mag;
    if (kind == 0) {
        mag = magnitude(0x7FFFFFFFu - (word & 0x7FFFFFFFu), table);
    } else {
        uint32_t w = (uint32_t)(w_lo + (((uint64_t)(word & 0x7FFFFFFFu) * span) >> 31));
        mag = magnitude(w, table);
        if (mag > cap) mag = cap;
    }
    return (word >> 31) ? -mag : mag;
}

#define LANES 16 /* blocks computed together: 64 words */

/* The 64 words of LANES consecutive blocks from `block`, in position order (portable version). */
static void words_scalar(uint64_t block, uint32_t stream, uint32_t k0, uint32_t k1, uint32_t *out) {
    for (int l = 0; l < LANES; l++) {
        uint64_t b = block + (uint64_t)l;
        uint32_t c[4] = {(uint32_t)b, (uint32_t)(b >> 32), stream, 0}, a0 = k0, a1 = k1;
        for (int r = 0; r < 10; r++) {
            uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ a0, n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ a1;
            c[0] = n0;
            c[1] = (uint32_t)p1;
            c[2] = n2;
            c[3] = (uint32_t)p0;
            a0 += 0x9E3779B9u;
            a1 += 0xBB67AE85u;
        }
        for (int j = 0; j < 4; j++) out[4 * l + j] = c[j];
    }
}

/* Positions [start, start + n) into out; WORDS and the four-value TRANSFORM (or none) are the
 * variant's. Blocks are computed LANES at a time; a part that starts mid-block skips its first words. */
#define FILL_BODY(WORDS, TRANSFORM4)                                                                  \
    uint32_t words[4 * LANES];                                                                        \
    uint64_t block = start / 4;                                                                       \
    Py_ssize_t skip = (Py_ssize_t)(start % 4), i = 0;                                                 \
    char *bytes = (char *)out;                                                                        \
    while (i < n) {                                                                                   \
        WORDS(block, stream, k0, k1, words);                                                          \
        int j = (int)skip;                                                                            \
        TRANSFORM4                                                                                    \
        for (; j < 4 * LANES && i < n; j++, i++)                                                      \
            store(out, elsize, i, value(words[j], table, kind, w_lo, span, cap));             \
        skip = 0;                                                                                     \
        block += LANES;                                                                               \
    }                                                                                                 \
    (void)bytes;

#define FILL_ARGS                                                                                     \
    void *out, Py_ssize_t n, uint64_t start, int elsize, const int64_t *table, \
        uint32_t k0, uint32_t k1, uint32_t stream, int kind, uint64_t w_lo, uint64_t span, int64_t cap

typedef void (*fill_fn)(FILL_ARGS);

static void fill_scalar(FILL_ARGS) { FILL_BODY(words_scalar, ) }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* The same words, 8 blocks per AVX2 vector: _mm256_mul_epu32 gives the 64-bit products of the even
 * 32-bit lanes, and of the odd ones after a shift; their halves are put back in place. Integer
 * arithmetic, so the words are the scalar version's. */
__attribute__((target("avx2"))) static inline void words_avx2(uint64_t block, uint32_t stream, uint32_t k0, uint32_t k1, uint32_t *out) {
    
    __m256i c0[2], c1[2], c2[2], c3[2];
    for (int v = 0; v < 2; v++) {
        uint32_t lo[8], hi[8];
        for (int l = 0; l < 8; l++) { uint64_t b = block + 8*v + l; lo[l] = (uint32_t)b; hi[l] = (uint32_t)(b >> 32); }
        c0[v] = _mm256_loadu_si256((const __m256i *)lo);
        c1[v] = _mm256_loadu_si256((const __m256i *)hi);
        c2[v] = _mm256_set1_epi32((int)stream);
        c3[v] = _mm256_setzero_si256();
    }
    const __m256i m0 = _mm256_set1_epi64x(0xD2511F53u), m1 = _mm256_set1_epi64x(0xCD9E8D57u);
    const __m256i lomask = _mm256_set1_epi64x(0xFFFFFFFFu);
    for (int r = 0; r < 10; r++) {
        const __m256i kk0 = _mm256_set1_epi32((int)k0), kk1 = _mm256_set1_epi32((int)k1);
        for (int v = 0; v < 2; v++) {
            __m256i pe0 = _mm256_mul_epu32(c0[v], m0);                          /* lanes 0,2,4,6 */
            __m256i po0 = _mm256_mul_epu32(_mm256_srli_epi64(c0[v], 32), m0);   /* lanes 1,3,5,7 */
            __m256i pe1 = _mm256_mul_epu32(c2[v], m1);
            __m256i po1 = _mm256_mul_epu32(_mm256_srli_epi64(c2[v], 32), m1);
            __m256i lo0 = _mm256_or_si256(_mm256_and_si256(pe0, lomask), _mm256_slli_epi64(po0, 32));
            __m256i hi0 = _mm256_or_si256(_mm256_srli_epi64(pe0, 32), _mm256_andnot_si256(lomask, po0));
            __m256i lo1 = _mm256_or_si256(_mm256_and_si256(pe1, lomask), _mm256_slli_epi64(po1, 32));
            __m256i hi1 = _mm256_or_si256(_mm256_srli_epi64(pe1, 32), _mm256_andnot_si256(lomask, po1));
            __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[v]), kk0);
            __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[v]), kk1);
            c0[v] = n0; c1[v] = lo1; c2[v] = n2; c3[v] = lo0;
        }
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    for (int v = 0; v < 2; v++) {
        uint32_t a[8], b[8], c[8], d[8];
        _mm256_storeu_si256((__m256i *)a, c0[v]); _mm256_storeu_si256((__m256i *)b, c1[v]);
        _mm256_storeu_si256((__m256i *)c, c2[v]); _mm256_storeu_si256((__m256i *)d, c3[v]);
        for (int l = 0; l < 8; l++) { int q = 4*(8*v+l); out[q]=a[l]; out[q+1]=b[l]; out[q+2]=c[l]; out[q+3]=d[l]; }
    }
}


/* Four values of the transform below at once, for the same integers: w's octave and top mantissa
 * bits from its exact float64 form, the knots and slopes by one load per lane, the 40-bit slope times the 24-bit offset as
 * two 32x32-bit products, and the int64 -> float64 conversion by the 2^52 + 2^51 offset trick (exact
 * for |x| < 2^51). kind and the truncation parameters as in fill(). */
__attribute__((target("avx2"))) static inline void transform4_avx2(const uint32_t *words, void *out, int elsize,
                                                            const int64_t *table,
                                                            int kind, uint64_t w_lo, uint64_t span,
                                                            int64_t cap) {
    __m128i word = _mm_loadu_si128((const __m128i *)words);
    __m128i r = _mm_and_si128(word, _mm_set1_epi32(0x7FFFFFFF));
    __m256i w;
    if (kind == 0) {
        w = _mm256_cvtepu32_epi64(_mm_sub_epi32(_mm_set1_epi32(0x7FFFFFFF), r));
    } else {
        __m256i prod = _mm256_mul_epu32(_mm256_cvtepu32_epi64(r), _mm256_set1_epi64x((long long)span));
        w = _mm256_add_epi64(_mm256_srli_epi64(prod, 31), _mm256_set1_epi64x((long long)w_lo));
    }
    /* w < 2^31: its 32-bit form converts to float64 exactly */
    __m128i w32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0)));
    __m256i bits = _mm256_castpd_si256(_mm256_cvtepi32_pd(w32));
    __m256i octave = _mm256_sub_epi64(_mm256_srli_epi64(bits, 52), _mm256_set1_epi64x(1023));
    __m256i six = _mm256_set1_epi64x(SUB);
    octave = _mm256_blendv_epi8(octave, six, _mm256_cmpgt_epi64(six, octave));
    __m256i shift = _mm256_sub_epi64(octave, six);
    __m256i mant = _mm256_and_si256(_mm256_srli_epi64(bits, 52 - SUB), _mm256_set1_epi64x((1 << SUB) - 1));
    __m256i seg = _mm256_add_epi64(_mm256_slli_epi64(_mm256_sub_epi64(octave, _mm256_set1_epi64x(SUB - 1)), SUB), mant);
    __m256i offset = _mm256_sub_epi64(w, _mm256_sllv_epi64(_mm256_add_epi64(mant, _mm256_set1_epi64x(1 << SUB)), shift));
    __m256i exact = _mm256_cmpgt_epi64(_mm256_set1_epi64x(1 << SUB), w);
    seg = _mm256_blendv_epi8(seg, w, exact);
    offset = _mm256_andnot_si256(exact, offset);
    /* knot and slope of each lane from the interleaved table: one 16-byte load per lane and two
     * unpacks (cheaper than two gathers on the CPUs measured) */
    __m128i seg_lo = _mm256_castsi256_si128(seg), seg_hi = _mm256_extracti128_si256(seg, 1);
    __m128i p0 = _mm_loadu_si128((const __m128i *)(table + 2 * _mm_cvtsi128_si64(seg_lo)));
    __m128i p1 = _mm_loadu_si128((const __m128i *)(table + 2 * _mm_extract_epi64(seg_lo, 1)));
    __m128i p2 = _mm_loadu_si128((const __m128i *)(table + 2 * _mm_cvtsi128_si64(seg_hi)));
    __m128i p3 = _mm_loadu_si128((const __m128i *)(table + 2 * _mm_extract_epi64(seg_hi, 1)));
    __m256i even = _mm256_set_m128i(p2, p0), odd = _mm256_set_m128i(p3, p1);
    __m256i knot = _mm256_unpacklo_epi64(even, odd);
    __m256i slope = _mm256_unpackhi_epi64(even, odd);
    __m256i prod = _mm256_add_epi64(_mm256_mul_epu32(slope, offset),
                                    _mm256_slli_epi64(_mm256_mul_epu32(_mm256_srli_epi64(slope, 32), offset), 32));
    __m256i mag = _mm256_sub_epi64(knot, _mm256_srlv_epi64(prod, shift));
    if (kind != 0) {
        __m256i c = _mm256_set1_epi64x((long long)cap);
        mag = _mm256_blendv_epi8(mag, c, _mm256_cmpgt_epi64(mag, c));
    }
    __m256i negative = _mm256_cvtepi32_epi64(_mm_srai_epi32(word, 31));
    __m256i fixed = _mm256_blendv_epi8(mag, _mm256_sub_epi64(_mm256_setzero_si256(), mag), negative);
    const __m256i magic = _mm256_set1_epi64x(0x4338000000000000LL);
    __m256d v = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(fixed, magic)), _mm256_castsi256_pd(magic));
    v = _mm256_mul_pd(v, _mm256_set1_pd(0x1p-40));
    if (elsize == 4)
        _mm_storeu_ps((float *)out, _mm256_cvtpd_ps(v));
    else
        _mm256_storeu_pd((double *)out, v);
}


__attribute__((target("avx2"))) static void fill_avx2(FILL_ARGS) {
    FILL_BODY(words_avx2, for (; j + 4 <= 4 * LANES && i + 4 <= n; j += 4, i += 4) transform4_avx2(
                              words + j, bytes + i * elsize, elsize, table, kind, w_lo, span, cap);)
}

/* Chosen once, at import: the AVX2 variant where the CPU has it. */
static fill_fn pick_fill(void) { return __builtin_cpu_supports("avx2") ? fill_avx2 : fill_scalar; }
#else
static fill_fn pick_fill(void) { return fill_scalar; }
#endif

static fill_fn fill;

static int check_elsize(int elsize) {
    if (elsize != 4 && elsize != 8) {
        PyErr_Format(PyExc_ValueError, "element size: got %d; allowed: 4 (float32) or 8 (float64)", elsize);
        return 0;
    }
    return 1;
}

static PyObject *normal(PyObject *self, PyObject *args) {
    unsigned long long out, start, table;
    Py_ssize_t n;
    int elsize;
    unsigned long k0, k1, stream;
    if (!PyArg_ParseTuple(args, "KnKiKkkk", &out, &n, &start, &elsize, &table, &k0, &k1, &stream)) return NULL;
    if (!check_elsize(elsize)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    fill((void *)(uintptr_t)out, n, start, elsize, (const int64_t *)(uintptr_t)table, (uint32_t)k0,
         (uint32_t)k1, (uint32_t)stream, 0, 0, 0, 0);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *truncated(PyObject *self, PyObject *args) {
    unsigned long long out, start, table, w_lo, span;
    long long cap;
    Py_ssize_t n;
    int elsize;
    unsigned long k0, k1, stream;
    if (!PyArg_ParseTuple(args, "KnKiKkkkKKL", &out, &n, &start, &elsize, &table, &k0, &k1, &stream, &w_lo,
                          &span, &cap))
        return NULL;
    if (!check_elsize(elsize)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    fill((void *)(uintptr_t)out, n, start, elsize, (const int64_t *)(uintptr_t)table, (uint32_t)k0,
         (uint32_t)k1, (uint32_t)stream, 1, w_lo, span, (int64_t)cap);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* w += (z * alpha) with the product rounded to the element type before the sum: what the portable form
 * torch.mul(z, alpha) then add_ computes, in one pass and without the temporary. The build forbids
 * contracting the two into a fused multiply-add (-ffp-contract=off), which would round once instead of
 * twice; each lane of a vectorised loop rounds as the scalar code does. */
static void axpy32(float *w, const float *z, Py_ssize_t n, float a) {
    for (Py_ssize_t i = 0; i < n; i++) {
        float p = z[i] * a;
        w[i] = w[i] + p;
    }
}

static void axpy64(double *w, const double *z, Py_ssize_t n, double a) {
    for (Py_ssize_t i = 0; i < n; i++) {
        double p = z[i] * a;
        w[i] = w[i] + p;
    }
}

static PyObject *axpy(PyObject *self, PyObject *args) {
    unsigned long long w, z;
    Py_ssize_t n;
    int elsize;
    double alpha;
    if (!PyArg_ParseTuple(args, "KKnid", &w, &z, &n, &elsize, &alpha)) return NULL;
    if (!check_elsize(elsize)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (elsize == 4)
        axpy32((float *)(uintptr_t)w, (const float *)(uintptr_t)z, n, (float)alpha);
    else
        axpy64((double *)(uintptr_t)w, (const double *)(uintptr_t)z, n, alpha);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *use_scalar(PyObject *self, PyObject *args) {
    fill = fill_scalar;
    Py_RETURN_NONE;
}

static PyObject *variant(PyObject *self, PyObject *args) {
    return PyUnicode_FromString(fill == fill_scalar ? "scalar" : "avx2");
}

static PyMethodDef methods[] = {
    {"use_scalar", use_scalar, METH_NOARGS, "use the portable scalar variant from now on"},
    {"variant", variant, METH_NOARGS, "the variant in use: 'avx2' or 'scalar'"},
    {"normal", normal, METH_VARARGS, "normal(out_ptr, n, start, elsize, table_ptr, k0, k1, stream)"},
    {"axpy", axpy, METH_VARARGS, "axpy(w_ptr, z_ptr, n, elsize, alpha): w += round(z * alpha)"},
    {"truncated", truncated, METH_VARARGS,
     "truncated(out_ptr, n, start, elsize, table_ptr, k0, k1, stream, w_lo, span, cap)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_philox", "CPU kernel of zofo.core.philox", -1, methods};

PyMODINIT_FUNC PyInit__philox(void) {
    fill = pick_fill();
    return PyModule_Create(&module);
}
