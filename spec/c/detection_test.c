/* detection_test.c -- the detection kernels (csrc/kernels/ops_detection.c,
 * ops_roi.c, ops_masks.c, ops_order.c) against plain references:
 *
 * 1. nms and batched_nms against an O(n^2) reference that recomputes every
 *    IoU from the boxes and visits them in a stable descending order,
 *    per category for batched_nms (ties, exact-threshold IoUs, 0..1500
 *    boxes); box_iou against the formula;
 * 2. roi_align against a direct evaluation of every output (no
 *    precomputed samples), the same bits, read from the planes (few
 *    samples on large maps) and from channels-last maps (many rois on small
 *    maps); roi_pool against a direct max;
 * 3. the torch orders: the unstable sort is a permutation in
 *    non-increasing order, top-k's first k are the k largest;
 * 4. every kernel with 1 and with 3 threads: the same bits;
 * 5. argument errors named in the message;
 * 6. class_map (ops_segment.c) against a per-pixel reference with the same
 *    float operations (the same bits), at 1, 2 and 3 threads, on odd sizes,
 *    ties, NaN and -inf; with a size, the class map of interpolate's output;
 * 7. bilinear interpolate (ops_interp.c, its rows of horizontal taps kept
 *    for the output rows that share them) against the formula per output
 *    value: the same bits, up- and downscales, at 1, 2 and 3 threads;
 * 8. ssd_candidates (ops_ssd.c) against torchvision's loop written plainly
 *    (per label, the passing scores in anchor order ranked by torch's top-k,
 *    ops_topk_desc, over all of them), and each label's candidates checked
 *    to be its k best without that replay: odd sizes, ties (zeros of both
 *    signs too), scores equal to the threshold, k above and below the
 *    count, 1-3 threads; batched_nms' per-category
 *    path the same at 1 and 3 threads, categories grouped or mixed;
 * 9. image_to_tensor (ops_to_tensor.c) against v / 255.0f for every byte,
 *    channels swapped to RGB, on a strided crop, at 1 and 3 threads.
 * torchvision's own answers are checked by spec/ops_spec.lua. Ends with
 * "N passed, N failed"; exit status 1 if anything failed.
 */
#include "internal.h"
#include "kernels/ops_order.h"
#include "kernels/vmath.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static int passed, failed;

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void) /* [0, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static pthcv_tensor *new_f32(int ndim, const int64_t *shape) { return pthcv_tensor_new(PTHCV_FLOAT32, ndim, shape); }
static float *fdata(pthcv_tensor *t) { return pthcv_tensor_data(t); }
static int64_t *idata(pthcv_tensor *t) { return pthcv_tensor_data(t); }

/* n boxes in [0, size)^2, sides up to 0.4 size; scores from `levels` values (0: continuous) */
static void random_boxes(pthcv_tensor **boxes, pthcv_tensor **scores, int64_t n, float size, int levels)
{
    int64_t bs[2] = {n, 4};
    *boxes = new_f32(2, bs);
    *scores = new_f32(1, &n);
    float *b = fdata(*boxes), *s = fdata(*scores);
    for (int64_t i = 0; i < n; i++) {
        b[4 * i] = (float)(urand() * size);
        b[4 * i + 1] = (float)(urand() * size);
        b[4 * i + 2] = b[4 * i] + (float)(urand() * size * 0.4 + 0.5);
        b[4 * i + 3] = b[4 * i + 1] + (float)(urand() * size * 0.4 + 0.5);
        s[i] = levels ? (float)((int)(urand() * levels) + 1) / (float)(levels + 1) : (float)urand();
    }
}

static float iou_of(const float *p, const float *q)
{
    float ap = (p[2] - p[0]) * (p[3] - p[1]), aq = (q[2] - q[0]) * (q[3] - q[1]);
    float w = fminf(p[2], q[2]) - fmaxf(p[0], q[0]), h = fminf(p[3], q[3]) - fmaxf(p[1], q[1]);
    float inter = (w > 0 ? w : 0) * (h > 0 ? h : 0);
    return inter / (ap + aq - inter);
}

/* reference nms over the boxes whose category is cat (all when cat < 0) */
static int64_t ref_nms(const float *b, const float *s, const int64_t *cat_of, int64_t cat, int64_t n, double thr,
                       int64_t *keep)
{
    ops_ranked *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    char *gone = calloc((size_t)(n ? n : 1), 1);
    int64_t m = 0, k = 0;
    for (int64_t i = 0; i < n; i++)
        if (cat < 0 || cat_of[i] == cat) v[m].value = s[i], v[m++].index = i;
    for (int64_t i = 1; i < m; i++) /* insertion sort: stable, descending */
        for (int64_t j = i; j > 0 && v[j].value > v[j - 1].value; j--) {
            ops_ranked t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    for (int64_t a = 0; a < m; a++) {
        int64_t i = v[a].index;
        if (gone[i]) continue;
        keep[k++] = i;
        for (int64_t c = a + 1; c < m; c++)
            if ((double)iou_of(b + 4 * i, b + 4 * v[c].index) > thr) gone[v[c].index] = 1;
    }
    free(v);
    free(gone);
    return k;
}

static int same_indices(pthcv_tensor *t, const int64_t *want, int64_t n)
{
    return t && t->numel == n && (n == 0 || memcmp(idata(t), want, (size_t)n * sizeof *want) == 0);
}

static void test_nms(void)
{
    const int64_t sizes[] = {0, 1, 3, 7, 17, 33, 200, 1500};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (int levels = 0; levels <= 3; levels += 3) {
            int64_t n = sizes[si];
            pthcv_tensor *b, *s;
            random_boxes(&b, &s, n, 100.0f, levels);
            int64_t *want = malloc((size_t)(n + 1) * sizeof *want);
            for (double thr = 0.3; thr < 0.8; thr += 0.25) {
                int64_t k = ref_nms(fdata(b), fdata(s), NULL, -1, n, thr, want);
                pthcv_tensor *got = pthcv_nms(b, s, thr);
                CHECK(same_indices(got, want, k), "nms n=%lld levels=%d thr=%g", (long long)n, levels, thr);
                pthcv_tensor_release(got);
            }
            /* batched: categories 0, 3, 6; the reference merges per-category
             * results by score, then index (the set is what matters here; the
             * order of the unstable final sort is checked by ops_spec) */
            pthcv_tensor *idx = pthcv_tensor_new(PTHCV_INT64, 1, &n);
            for (int64_t i = 0; i < n; i++) idata(idx)[i] = 3 * (int64_t)(urand() * 3);
            char *in_ref = calloc((size_t)(n + 1), 1);
            int64_t total = 0;
            for (int64_t c = 0; c <= 6; c += 3) {
                int64_t k = ref_nms(fdata(b), fdata(s), idata(idx), c, n, 0.45, want);
                for (int64_t j = 0; j < k; j++) in_ref[want[j]] = 1;
                total += k;
            }
            pthcv_tensor *got = pthcv_batched_nms(b, s, idx, 0.45);
            int ok = got && got->numel == total;
            for (int64_t j = 0; ok && j < total; j++)
                ok = in_ref[idata(got)[j]] && (j == 0 || fdata(s)[idata(got)[j]] <= fdata(s)[idata(got)[j - 1]]);
            /* n > 1000 takes the per-category path, else the offset one: only
             * the offset path's float rounding could differ, at 100-pixel boxes not */
            CHECK(ok, "batched_nms n=%lld levels=%d: %lld kept, reference %lld", (long long)n, levels,
                  got ? (long long)got->numel : -1LL, (long long)total);
            pthcv_tensor_release(got);
            free(in_ref);
            pthcv_tensor_release(idx);
            free(want);
            pthcv_tensor_release(b);
            pthcv_tensor_release(s);
        }
}

static void test_orders(void)
{
    const int64_t sizes[] = {1, 2, 16, 17, 33, 1000, 5000};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int64_t n = sizes[si];
        ops_ranked *v = malloc((size_t)n * sizeof *v);
        char *seen = calloc((size_t)n, 1);
        for (int64_t i = 0; i < n; i++) v[i].value = (float)(int)(urand() * 4), v[i].index = i;
        ops_sort_desc(v, n);
        int ok = 1;
        for (int64_t i = 0; i < n; i++) {
            ok &= !seen[v[i].index] && (i == 0 || v[i].value <= v[i - 1].value);
            seen[v[i].index] = 1;
        }
        CHECK(ok, "sort of %lld tied values is not a non-increasing permutation", (long long)n);
        for (int64_t k = 0; k <= n; k += n / 3 + 1) {
            for (int64_t i = 0; i < n; i++) v[i].value = (float)urand(), v[i].index = i;
            float kth = 0; /* the k-th largest, by counting */
            if (k > 0) {
                ops_ranked *w = malloc((size_t)n * sizeof *w);
                memcpy(w, v, (size_t)n * sizeof *w);
                ops_sort_desc_stable(w, n);
                kth = w[k - 1].value;
                free(w);
            }
            ops_topk_desc(v, n, k);
            ok = 1;
            for (int64_t i = 0; i < k; i++) ok &= v[i].value >= kth && (i == 0 || v[i].value <= v[i - 1].value);
            CHECK(ok, "topk k=%lld of %lld", (long long)k, (long long)n);
        }
        free(v);
        free(seen);
    }
}

/* torchvision's roi_align for one output, evaluated directly */
static float ref_roi_align(const float *x, int64_t C, int64_t H, int64_t W, const float *r, float scale, int64_t ph,
                           int64_t pw, int sr, int aligned, int64_t c, int64_t oy, int64_t ox)
{
    float off = aligned ? 0.5f : 0.0f;
    float sw = r[1] * scale - off, sh = r[2] * scale - off;
    float rw = r[3] * scale - off - sw, rh = r[4] * scale - off - sh;
    if (!aligned) rw = rw > 1 ? rw : 1, rh = rh > 1 ? rh : 1;
    float bh = rh / (float)ph, bw = rw / (float)pw;
    int64_t gh = sr > 0 ? sr : (int64_t)ceilf(rh / (float)ph), gw = sr > 0 ? sr : (int64_t)ceilf(rw / (float)pw);
    const float *p = x + ((int64_t)r[0] * C + c) * H * W;
    float acc = 0;
    for (int64_t iy = 0; iy < gh; iy++)
        for (int64_t ix = 0; ix < gw; ix++) {
            float y = sh + (float)oy * bh + ((float)iy + 0.5f) * bh / (float)gh;
            float xx = sw + (float)ox * bw + ((float)ix + 0.5f) * bw / (float)gw;
            if (y < -1.0f || y > (float)H || xx < -1.0f || xx > (float)W) continue;
            y = y <= 0 ? 0 : y;
            xx = xx <= 0 ? 0 : xx;
            int64_t y0 = (int64_t)y, x0 = (int64_t)xx, y1 = y0 + 1, x1 = x0 + 1;
            if (y0 >= H - 1) y0 = y1 = H - 1, y = (float)y0;
            if (x0 >= W - 1) x0 = x1 = W - 1, xx = (float)x0;
            float ly = y - (float)y0, lx = xx - (float)x0, hy = 1 - ly, hx = 1 - lx;
            acc += hy * hx * p[y0 * W + x0] + hy * lx * p[y0 * W + x1] + ly * hx * p[y1 * W + x0] +
                ly * lx * p[y1 * W + x1];
        }
    int64_t cnt = gh * gw > 1 ? gh * gw : 1;
    return acc / (float)cnt;
}

static pthcv_tensor *random_rois(int64_t k, int64_t batch, float extent)
{
    int64_t rs[2] = {k, 5};
    pthcv_tensor *rois = new_f32(2, rs);
    float *r = fdata(rois);
    for (int64_t i = 0; i < k; i++) {
        r[5 * i] = (float)(int64_t)(urand() * batch);
        r[5 * i + 1] = (float)(urand() * 1.2 - 0.1) * extent;
        r[5 * i + 2] = (float)(urand() * 1.2 - 0.1) * extent;
        r[5 * i + 3] = r[5 * i + 1] + (float)urand() * extent * 0.6f;
        r[5 * i + 4] = r[5 * i + 2] + (float)urand() * extent * 0.6f;
    }
    return rois;
}

static int same_bits(pthcv_tensor *a, pthcv_tensor *b)
{
    return a && b && a->numel == b->numel &&
        memcmp(pthcv_tensor_data(a), pthcv_tensor_data(b), (size_t)pthcv_tensor_nbytes(a)) == 0;
}

/* roi_align of x [N, C, H, W] at every sampling ratio and alignment: 1 and 3
 * threads the same bits, every output the direct evaluation's bits */
static void check_roi_align(pthcv_tensor *x, pthcv_tensor *rois, float scale, int64_t ph, int64_t pw, const char *what)
{
    int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3];
    for (int sr = -1; sr <= 2; sr++)
        for (int aligned = 0; aligned <= 1; aligned++) {
            pthcv_set_num_threads(1);
            pthcv_tensor *a = pthcv_roi_align(x, rois, scale, (int32_t)ph, (int32_t)pw, sr, aligned);
            pthcv_set_num_threads(3);
            pthcv_tensor *b = pthcv_roi_align(x, rois, scale, (int32_t)ph, (int32_t)pw, sr, aligned);
            CHECK(same_bits(a, b), "roi_align %s C=%lld sr=%d aligned=%d: 1 and 3 threads differ", what, (long long)C,
                  sr, aligned);
            int ok = a != NULL;
            for (int64_t k = 0; ok && k < rois->shape[0]; k++)
                for (int64_t c = 0; ok && c < C; c++)
                    for (int64_t o = 0; ok && o < ph * pw; o++) {
                        float want = ref_roi_align(fdata(x), C, H, W, fdata(rois) + 5 * k, scale, ph, pw, sr, aligned,
                                                   c, o / pw, o % pw);
                        ok = memcmp(&want, fdata(a) + (k * C + c) * ph * pw + o, sizeof want) == 0;
                    }
            CHECK(ok, "roi_align %s C=%lld sr=%d aligned=%d differs from the direct evaluation", what, (long long)C, sr,
                  aligned);
            pthcv_tensor_release(a);
            pthcv_tensor_release(b);
        }
}

static pthcv_tensor *random_map(int64_t n, int64_t c, int64_t h, int64_t w)
{
    int64_t xs[4] = {n, c, h, w};
    pthcv_tensor *x = new_f32(4, xs);
    for (int64_t i = 0; i < x->numel; i++) fdata(x)[i] = (float)(urand() * 4 - 2);
    return x;
}

static void test_roi(void)
{
    const int64_t chans[] = {1, 3, 7, 17, 33};
    for (size_t ci = 0; ci < sizeof chans / sizeof *chans; ci++) {
        int64_t C = chans[ci], H = 7 + 2 * (int64_t)ci, W = 33 - 4 * (int64_t)ci;
        pthcv_tensor *x = random_map(2, C, H, W);
        float scale = ci % 2 ? 0.5f : 1.0f;
        pthcv_tensor *rois = random_rois(9, 2, (float)W / scale);
        check_roi_align(x, rois, scale, 3 + (int64_t)ci % 2, 5 - (int64_t)ci % 3, "mixed");
        pthcv_set_num_threads(1);
        pthcv_tensor *p1 = pthcv_roi_pool(x, rois, scale, 2, 3);
        pthcv_set_num_threads(3);
        pthcv_tensor *p3 = pthcv_roi_pool(x, rois, scale, 2, 3);
        CHECK(same_bits(p1, p3), "roi_pool C=%lld: 1 and 3 threads differ", (long long)C);
        pthcv_tensor_release(p1);
        pthcv_tensor_release(p3);
        pthcv_tensor_release(rois);
        pthcv_tensor_release(x);
        /* many rois on small maps (an R-CNN box head's shape): the samples
         * outnumber the pixels, read from a channels-last copy */
        x = random_map(2, C, 3 + (int64_t)ci, 5);
        rois = random_rois(41, 2, 10.0f);
        check_roi_align(x, rois, 0.5f, 7, 7, "channels last");
        pthcv_tensor_release(rois);
        pthcv_tensor_release(x);
        /* one small roi on a large map: read from the planes */
        x = random_map(1, C, 61, 67 - 2 * (int64_t)ci);
        rois = random_rois(1, 1, 20.0f);
        check_roi_align(x, rois, 1.0f, 2, 3, "planes");
        pthcv_tensor_release(rois);
        pthcv_tensor_release(x);
    }
}

static void test_threads_masks(void)
{
    int64_t ms[4] = {7, 1, 28, 28}, bs[2] = {7, 4}, hs[4] = {7, 3, 56, 56};
    pthcv_tensor *m = new_f32(4, ms), *boxes = new_f32(2, bs), *maps = new_f32(4, hs), *kp[2], *sc[2];
    for (int64_t i = 0; i < m->numel; i++) fdata(m)[i] = (float)urand();
    for (int64_t i = 0; i < maps->numel; i++) fdata(maps)[i] = (float)(urand() * 2 - 1);
    for (int64_t i = 0; i < 7; i++) {
        float *b = fdata(boxes) + 4 * i;
        b[0] = (float)(urand() * 50), b[1] = (float)(urand() * 40);
        b[2] = b[0] + (float)(urand() * 30), b[3] = b[1] + (float)(urand() * 30);
    }
    pthcv_tensor *p[2];
    for (int t = 0; t < 2; t++) {
        pthcv_set_num_threads(t ? 3 : 1);
        p[t] = pthcv_paste_masks(m, boxes, 47, 61, 1);
        CHECK(pthcv_heatmaps_to_keypoints(maps, boxes, &kp[t], &sc[t]) == PTHCV_OK, "heatmaps_to_keypoints: %s",
              pthcv_last_error());
    }
    CHECK(same_bits(p[0], p[1]), "paste_masks: 1 and 3 threads differ");
    CHECK(same_bits(kp[0], kp[1]) && same_bits(sc[0], sc[1]), "heatmaps_to_keypoints: 1 and 3 threads differ");
    for (int t = 0; t < 2; t++) {
        pthcv_tensor_release(p[t]);
        pthcv_tensor_release(kp[t]);
        pthcv_tensor_release(sc[t]);
    }
    pthcv_tensor_release(m);
    pthcv_tensor_release(boxes);
    pthcv_tensor_release(maps);
}

/* ---- class_map ------------------------------------------------------------------- */
/* pixel i of logits [C, plane]: the first largest index (NaN the largest),
 * and 1 / sum exp(x - max) in channel order */
static void class_ref(const float *x, int64_t C, int64_t plane, int64_t i, uint8_t *cls, float *score)
{
    float best = x[i];
    int k = 0;
    for (int64_t c = 1; c < C; c++) {
        float v = x[c * plane + i];
        if (v > best || (isnan(v) && !isnan(best))) best = v, k = (int)c;
    }
    float sum = 0.0f;
    for (int64_t c = 0; c < C; c++) sum += vm_exp(x[c * plane + i] - best);
    *cls = (uint8_t)k, *score = 1.0f / sum;
}

static void test_class_map(void)
{
    static const int64_t sizes[][3] = {{1, 1, 1},  {3, 1, 7},   {7, 3, 7},    {17, 17, 33},
                                       {21, 23, 45}, {33, 16, 16}, {256, 5, 61}, {2, 40, 41}};
    for (size_t n = 0; n < sizeof sizes / sizeof *sizes; n++) {
        int64_t C = sizes[n][0], H = sizes[n][1], W = sizes[n][2], plane = H * W;
        int64_t shape[4] = {1, C, H, W};
        pthcv_tensor *x = new_f32(4 - (int)(n % 2), shape + n % 2); /* [C, H, W] and [1, C, H, W] */
        float *xd = fdata(x);
        for (int64_t i = 0; i < x->numel; i++) xd[i] = (float)((int)(urand() * 9) - 4) * 1.5f; /* ties */
        if (plane > 5) xd[3] = NAN, xd[(C - 1) * plane + 5] = NAN, xd[4] = -INFINITY;
        pthcv_tensor *cls[3], *sc[3];
        for (int t = 0; t < 3; t++) {
            pthcv_set_num_threads(t + 1);
            cls[t] = pthcv_class_map(x, 0, 0, &sc[t]);
            CHECK(cls[t] && sc[t], "class_map [%lld, %lld, %lld]: %s", (long long)C, (long long)H, (long long)W,
                  pthcv_last_error());
        }
        if (!cls[0] || !sc[0]) continue;
        CHECK(cls[0]->dtype == PTHCV_UINT8 && cls[0]->ndim == 2 && cls[0]->shape[0] == H && cls[0]->shape[1] == W &&
                  sc[0]->ndim == 2 && sc[0]->shape[0] == H && sc[0]->shape[1] == W,
              "class_map C=%lld: shapes", (long long)C);
        int64_t wrong = 0;
        const uint8_t *cd = pthcv_tensor_data(cls[0]);
        const float *sd = fdata(sc[0]);
        for (int64_t i = 0; i < plane; i++) {
            uint8_t k;
            float s;
            class_ref(xd, C, plane, i, &k, &s);
            if (cd[i] != k || memcmp(&sd[i], &s, sizeof s) != 0) wrong++;
        }
        CHECK(wrong == 0, "class_map [%lld, %lld, %lld]: %lld pixels differ from the reference", (long long)C,
              (long long)H, (long long)W, (long long)wrong);
        if (plane > 5) CHECK(cd[3] == 0 && isnan(sd[3]), "class_map C=%lld: NaN is the largest", (long long)C);
        for (int t = 1; t < 3; t++)
            CHECK(same_bits(cls[0], cls[t]) && same_bits(sc[0], sc[t]), "class_map C=%lld: 1 and %d threads differ",
                  (long long)C, t + 1);
        for (int t = 0; t < 3; t++) pthcv_tensor_release(cls[t]), pthcv_tensor_release(sc[t]);
        pthcv_tensor_release(x);
    }
    pthcv_set_num_threads(2);
}

/* ---- bilinear interpolate ------------------------------------------------------------ */
/* torch's source taps of output o (ops_interp.c's header) */
static void ref_taps(int64_t in, int64_t out, int align_corners, int64_t o, int64_t *i0, int64_t *i1, float *l0,
                     float *l1)
{
    float scale = align_corners ? (out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f) : (float)in / (float)out;
    double src = align_corners ? (double)scale * (double)o : (double)scale * ((double)o + 0.5) - 0.5;
    if (src < 0.0) src = 0.0;
    *i0 = (int64_t)src;
    double l = src - (double)*i0;
    l = l < 0.0 ? 0.0 : l > 1.0 ? 1.0 : l;
    *i1 = *i0 + (*i0 < in - 1 ? 1 : 0);
    *l0 = (float)(1.0 - l), *l1 = (float)l;
}

static void test_interpolate(void)
{
    static const int64_t cases[][5] = {/* planes, H, W, OH, OW */
                                       {1, 1, 1, 7, 5},     {3, 7, 9, 57, 71},  {21, 65, 65, 520, 520},
                                       {3, 48, 64, 32, 31}, {2, 17, 33, 5, 3},  {5, 9, 4, 9, 13},
                                       {7, 3, 1, 17, 1},    {1, 33, 17, 34, 18}};
    for (size_t n = 0; n < sizeof cases / sizeof *cases; n++) {
        const int64_t *k = cases[n];
        int64_t xs[3] = {k[0], k[1], k[2]};
        pthcv_tensor *x = new_f32(3, xs);
        float *xd = fdata(x);
        for (int64_t i = 0; i < x->numel; i++) xd[i] = (float)(urand() * 4 - 2);
        for (int ac = 0; ac < 2; ac++) {
            pthcv_tensor *y[3];
            for (int t = 0; t < 3; t++) {
                pthcv_set_num_threads(t + 1);
                y[t] = pthcv_interpolate(x, (int32_t)k[3], (int32_t)k[4], PTHCV_INTERP_BILINEAR, ac, 0, 0);
                CHECK(y[t] != NULL, "interpolate case %zu: %s", n, pthcv_last_error());
            }
            if (!y[0] || !y[1] || !y[2]) continue;
            int64_t wrong = 0;
            const float *yd = fdata(y[0]);
            for (int64_t p = 0; p < k[0]; p++)
                for (int64_t oh = 0; oh < k[3]; oh++)
                    for (int64_t ow = 0; ow < k[4]; ow++) {
                        int64_t h0, h1, w0, w1;
                        float a0, a1, b0, b1;
                        ref_taps(k[1], k[3], ac, oh, &h0, &h1, &a0, &a1);
                        ref_taps(k[2], k[4], ac, ow, &w0, &w1, &b0, &b1);
                        const float *r0 = xd + (p * k[1] + h0) * k[2], *r1 = xd + (p * k[1] + h1) * k[2];
                        float t0 = r0[w0] * b0 + r0[w1] * b1, t1 = r1[w0] * b0 + r1[w1] * b1;
                        float want = t0 * a0 + t1 * a1, got = yd[(p * k[3] + oh) * k[4] + ow];
                        if (memcmp(&want, &got, sizeof want) != 0) wrong++;
                    }
            CHECK(wrong == 0, "interpolate case %zu align_corners %d: %lld values differ from the formula", n, ac,
                  (long long)wrong);
            CHECK(same_bits(y[0], y[1]) && same_bits(y[0], y[2]), "interpolate case %zu: 1, 2, 3 threads differ", n);
            for (int t = 0; t < 3; t++) pthcv_tensor_release(y[t]);
        }
        pthcv_tensor_release(x);
    }
    pthcv_set_num_threads(2);
}

/* class_map with a size: the class map of interpolate's output, the same bits */
static void test_class_map_resized(void)
{
    static const int64_t cases[][5] = {/* C, H, W, OH, OW */
                                       {21, 65, 65, 520, 520}, {3, 7, 9, 57, 71}, {17, 33, 17, 5, 3}, {5, 6, 7, 6, 7},
                                       {1, 1, 1, 7, 5},        {7, 16, 16, 17, 300}, {2, 9, 4, 9, 4}};
    for (size_t n = 0; n < sizeof cases / sizeof *cases; n++) {
        const int64_t *k = cases[n];
        int64_t xs[4] = {1, k[0], k[1], k[2]};
        pthcv_tensor *x = new_f32(4, xs);
        for (int64_t i = 0; i < x->numel; i++) fdata(x)[i] = (float)((int)(urand() * 9) - 4) * 1.5f;
        pthcv_tensor *big = pthcv_interpolate(x, (int32_t)k[3], (int32_t)k[4], PTHCV_INTERP_BILINEAR, 0, 0, 0), *ws;
        pthcv_tensor *want = big ? pthcv_class_map(big, 0, 0, &ws) : NULL;
        CHECK(want != NULL, "class_map resized case %zu: %s", n, pthcv_last_error());
        for (int t = 1; want && t <= 3; t++) {
            pthcv_set_num_threads(t);
            pthcv_tensor *gs, *got = pthcv_class_map(x, (int32_t)k[3], (int32_t)k[4], &gs);
            CHECK(got && same_bits(got, want) && same_bits(gs, ws),
                  "class_map resized case %zu, %d threads: differs from the class map of interpolate's output", n, t);
            pthcv_tensor_release(got);
            pthcv_tensor_release(gs);
        }
        if (want) pthcv_tensor_release(want), pthcv_tensor_release(ws);
        pthcv_tensor_release(big);
        pthcv_tensor_release(x);
    }
    pthcv_set_num_threads(2);
}

/* ---- SSD's candidates, batched_nms' threads -------------------------------------------- */

/* torchvision's loop, plainly: labels 1..C-1, the scores > lim in anchor
 * order, torch.topk of them; candidates appended to (anchor, score, label) */
static int64_t ref_candidates(const float *s, int64_t A, int64_t C, float lim, int64_t topk, int64_t *anchor,
                              float *score, int64_t *label)
{
    ops_ranked *v = malloc((size_t)(A ? A : 1) * sizeof *v);
    int64_t m = 0;
    for (int64_t c = 1; c < C; c++) {
        int64_t n = 0;
        for (int64_t a = 0; a < A; a++)
            if (s[a * C + c] > lim) v[n].value = s[a * C + c], v[n++].index = a;
        int64_t k = topk < n ? topk : n;
        ops_topk_desc(v, n, k);
        for (int64_t i = 0; i < k; i++, m++) anchor[m] = v[i].index, score[m] = v[i].value, label[m] = c;
    }
    free(v);
    return m;
}

/* each label's candidates are its k best passing scores, best first: no
 * passing score left out is above the last one taken */
static int are_top_k(const float *s, int64_t A, int64_t C, float lim, int64_t topk, const float *score,
                     const int64_t *label, const float *box, int64_t m)
{
    int64_t at = 0;
    for (int64_t c = 1; c < C; c++) {
        int64_t n = 0, k, first = at;
        char *taken = calloc((size_t)(A ? A : 1), 1);
        for (int64_t a = 0; a < A; a++) n += s[a * C + c] > lim;
        k = topk < n ? topk : n;
        for (int64_t i = 0; i < k; i++, at++) {
            int64_t a = (int64_t)box[4 * at];
            if (at >= m || label[at] != c || a < 0 || a >= A || taken[a] || s[a * C + c] != score[at] ||
                !(score[at] > lim) || (i > 0 && score[at] > score[at - 1]))
                return free(taken), 0;
            taken[a] = 1;
        }
        for (int64_t a = 0; a < A && k > 0; a++)
            if (!taken[a] && s[a * C + c] > lim && s[a * C + c] > score[first + k - 1]) return free(taken), 0;
        free(taken);
    }
    return at == m;
}

static void test_ssd_candidates(void)
{
    const int64_t anchors[] = {1, 3, 7, 17, 33, 500}, classes[] = {1, 2, 3, 17, 91};
    const int64_t ks[] = {0, 1, 3, 17, 300};
    for (size_t ai = 0; ai < sizeof anchors / sizeof *anchors; ai++)
        for (size_t ci = 0; ci < sizeof classes / sizeof *classes; ci++)
            for (int levels = 0; levels <= 5; levels += 5) {
                int64_t A = anchors[ai], C = classes[ci], ss[2] = {A, C}, bs[2] = {A, 4};
                pthcv_tensor *sc = new_f32(2, ss), *boxes = new_f32(2, bs);
                float *s = fdata(sc), lim = 0.2f;
                for (int64_t i = 0; i < A * C; i++) /* levels: k / 10, 0.2 (= the threshold) among them */
                    s[i] = levels ? (float)(int)(urand() * levels) / 10.0f : (float)urand();
                for (int64_t a = 0; a < A; a++) /* a box names its anchor */
                    for (int j = 0; j < 4; j++) fdata(boxes)[4 * a + j] = (float)a + 0.25f * (float)j;
                int64_t *anchor = malloc((size_t)(A * C + 1) * sizeof *anchor), *label = malloc((size_t)(A * C + 1) * 8);
                float *score = malloc((size_t)(A * C + 1) * sizeof *score);
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                    int64_t m = ref_candidates(s, A, C, lim, ks[ki], anchor, score, label);
                    pthcv_tensor *out[3][3];
                    for (int th = 0; th < 3; th++) {
                        pthcv_set_num_threads(th + 1);
                        CHECK(pthcv_ssd_candidates(sc, boxes, 0.2, ks[ki], &out[th][0], &out[th][1], &out[th][2]) ==
                                  PTHCV_OK, "ssd_candidates: %s", pthcv_last_error());
                    }
                    int ok = out[0][0] && out[0][1]->numel == m && out[0][0]->shape[1] == 4;
                    for (int64_t i = 0; ok && i < m; i++)
                        ok = fdata(out[0][0])[4 * i] == (float)anchor[i] && fdata(out[0][0])[4 * i + 3] ==
                             (float)anchor[i] + 0.75f && fdata(out[0][1])[i] == score[i] && idata(out[0][2])[i] == label[i];
                    CHECK(ok, "ssd_candidates A=%lld C=%lld levels=%d k=%lld: not torchvision's loop's", (long long)A,
                          (long long)C, levels, (long long)ks[ki]);
                    CHECK(ok && are_top_k(s, A, C, lim, ks[ki], fdata(out[0][1]), idata(out[0][2]), fdata(out[0][0]), m),
                          "ssd_candidates A=%lld C=%lld levels=%d k=%lld: not the k best", (long long)A, (long long)C,
                          levels, (long long)ks[ki]);
                    for (int th = 1; th < 3; th++)
                        for (int r = 0; r < 3; r++)
                            CHECK(same_bits(out[0][r], out[th][r]), "ssd_candidates A=%lld C=%lld: %d threads differ",
                                  (long long)A, (long long)C, th + 1);
                    for (int th = 0; th < 3; th++)
                        for (int r = 0; r < 3; r++) pthcv_tensor_release(out[th][r]);
                }
                free(anchor);
                free(label);
                free(score);
                pthcv_tensor_release(sc);
                pthcv_tensor_release(boxes);
            }
    /* zeros of both signs are equal scores: the 4th best is one of the tied
     * zeros (-0 and +0), whichever torch's top-k leaves there */
    const float columns[2][7] = {{0.5f, -0.0f, 0.25f, 0.0f, -0.0f, 0.0f, 0.125f},
                                 {-0.0f, -0.0f, 0.25f, 0.5f, -0.5f, 0.125f, 0.0f}};
    for (int z = 0; z < 2; z++) {
        int64_t zs[2] = {7, 2}, zb[2] = {7, 4}, anchor[8], label[8];
        pthcv_tensor *sc = new_f32(2, zs), *boxes = new_f32(2, zb), *out[3];
        float score[8];
        for (int64_t a = 0; a < 7; a++) {
            fdata(sc)[2 * a] = 0.0f, fdata(sc)[2 * a + 1] = columns[z][a];
            for (int j = 0; j < 4; j++) fdata(boxes)[4 * a + j] = (float)a + 0.25f * (float)j;
        }
        int64_t m = ref_candidates(fdata(sc), 7, 2, -1.0f, 4, anchor, score, label);
        int ok = pthcv_ssd_candidates(sc, boxes, -1.0, 4, &out[0], &out[1], &out[2]) == PTHCV_OK && m == 4 &&
                 out[1]->numel == 4;
        for (int64_t i = 0; ok && i < m; i++) ok = fdata(out[0])[4 * i] == (float)anchor[i];
        CHECK(ok, "ssd_candidates: tied zeros of both signs (case %d) not in torch's top-k order", z);
        for (int r = 0; r < 3; r++) pthcv_tensor_release(out[r]);
        pthcv_tensor_release(sc);
        pthcv_tensor_release(boxes);
    }
    pthcv_set_num_threads(2);
}

/* batched_nms above 1000 boxes (one nms per category, threads over
 * categories): the same indices at 1 and 3 threads, whether the boxes come
 * category by category (as SSD gives them) or mixed */
static void test_batched_threads(void)
{
    for (int grouped = 0; grouped < 2; grouped++) {
        int64_t n = 2701;
        pthcv_tensor *b, *s, *idx = pthcv_tensor_new(PTHCV_INT64, 1, &n), *keep[2];
        random_boxes(&b, &s, n, 300.0f, 7);
        for (int64_t i = 0; i < n; i++) idata(idx)[i] = grouped ? i * 17 / n : (int64_t)(urand() * 17);
        for (int t = 0; t < 2; t++) {
            pthcv_set_num_threads(t ? 3 : 1);
            keep[t] = pthcv_batched_nms(b, s, idx, 0.5);
        }
        CHECK(keep[0] && keep[0]->numel > 0 && same_bits(keep[0], keep[1]),
              "batched_nms (%s categories): 1 and 3 threads differ", grouped ? "grouped" : "mixed");
        for (int t = 0; t < 2; t++) pthcv_tensor_release(keep[t]);
        pthcv_tensor_release(idx);
        pthcv_tensor_release(b);
        pthcv_tensor_release(s);
    }
    pthcv_set_num_threads(2);
}

/* ---- image_to_tensor ---------------------------------------------------------------------- */

static void test_image_to_tensor(void)
{
    int64_t shape[3] = {19, 256, 3};
    pthcv_tensor *img = pthcv_tensor_new(PTHCV_UINT8, 3, shape);
    uint8_t *p = pthcv_tensor_data(img);
    for (int64_t i = 0; i < img->numel; i++) p[i] = (uint8_t)((i * 7 + i / 768) % 256); /* every byte */
    /* a crop: rows 2..18, columns 3..255, strided */
    int64_t crop_shape[3] = {17, 253, 3};
    pthcv_tensor *crop = pthcv_tensor_view(img, 3, crop_shape, img->stride, 2 * img->stride[0] + 3 * img->stride[1]);
    for (int v = 0; v < 2; v++) {
        pthcv_tensor *x = v ? crop : img, *y[2];
        for (int t = 0; t < 2; t++) {
            pthcv_set_num_threads(t ? 3 : 1);
            y[t] = pthcv_image_to_tensor(x);
        }
        int64_t H = x->shape[0], W = x->shape[1];
        const uint8_t *q = pthcv_tensor_data(x);
        int ok = y[0] && y[0]->ndim == 3 && y[0]->shape[0] == 3 && y[0]->shape[1] == H && y[0]->shape[2] == W;
        for (int64_t h = 0; ok && h < H; h++)
            for (int64_t w = 0; ok && w < W; w++)
                for (int64_t c = 0; ok && c < 3; c++) /* output channel c is input channel 2 - c */
                    ok = fdata(y[0])[(c * H + h) * W + w] ==
                         (float)q[h * x->stride[0] + w * x->stride[1] + (2 - c)] / 255.0f;
        CHECK(ok, "image_to_tensor (%s): not RGB / 255", v ? "crop" : "picture");
        CHECK(same_bits(y[0], y[1]), "image_to_tensor: 1 and 3 threads differ");
        pthcv_tensor_release(y[0]);
        pthcv_tensor_release(y[1]);
    }
    pthcv_tensor_release(crop);
    pthcv_tensor_release(img);
    pthcv_set_num_threads(2);
}

static void expect_error(pthcv_tensor *t, const char *what)
{
    CHECK(!t && strstr(pthcv_last_error(), what), "expected an error with \"%s\", got \"%s\"", what,
          t ? "(a result)" : pthcv_last_error());
    pthcv_tensor_release(t);
}

static void test_errors(void)
{
    int64_t s3[2] = {3, 3}, s4[2] = {3, 4}, n2 = 2, r5[2] = {1, 5}, x4[4] = {1, 1, 4, 4};
    pthcv_tensor *bad = new_f32(2, s3), *boxes = new_f32(2, s4), *scores = new_f32(1, &n2), *rois = new_f32(2, r5);
    pthcv_tensor *x = new_f32(4, x4), *ints = pthcv_tensor_new(PTHCV_INT64, 2, s4);
    expect_error(pthcv_nms(bad, scores, 0.5), "boxes must be [N, 4] (x1, y1, x2, y2), got [3, 3]");
    expect_error(pthcv_nms(boxes, scores, 0.5), "scores must be [3] like the boxes, got [2]");
    expect_error(pthcv_nms(ints, scores, 0.5), "boxes must be float32, got int64");
    expect_error(pthcv_batched_nms(boxes, scores, NULL, 0.5), "scores must be [3]");
    expect_error(pthcv_box_iou(boxes, bad), "boxes2 must be [N, 4]");
    expect_error(pthcv_roi_align(x, boxes, 1.0, 2, 2, -1, 0), "rois must be [K, 5]");
    expect_error(pthcv_roi_align(x, rois, 1.0, 0, 2, -1, 0), "output size (0, 2) must be positive");
    fdata(rois)[0] = 1;
    expect_error(pthcv_roi_pool(x, rois, 1.0, 2, 2), "roi 0 names batch element 1 of an input of 1");
    expect_error(pthcv_paste_masks(x, boxes, 10, 10, 1), "boxes must be [1, 4] like the masks");
    expect_error(pthcv_topk_indices(scores, 3), "k = 3 is out of range for 2 values");
    double w[4] = {1, 1, 1, 1};
    expect_error(pthcv_box_decode(bad, boxes, w, 4.0), "rel_codes must be [N, 4k], got [3, 3]");
    int64_t wide[3] = {257, 2, 2}, two[4] = {2, 3, 2, 2};
    pthcv_tensor *many = new_f32(3, wide), *batch = new_f32(4, two);
    expect_error(pthcv_class_map(many, 0, 0, NULL), "257 classes do not fit the uint8 class map (at most 256)");
    expect_error(pthcv_class_map(batch, 0, 0, NULL), "logits must be [C, H, W] or [1, C, H, W] with C >= 1, got [2, 3, 2, 2]");
    expect_error(pthcv_class_map(ints, 0, 0, NULL), "logits must be float32, got int64");
    expect_error(pthcv_class_map(x, 5, 0, NULL), "the output size (5, 0) must be positive, or (0, 0)");
    pthcv_tensor_release(many);
    pthcv_tensor_release(batch);
    pthcv_tensor *out[3];
    CHECK(pthcv_ssd_candidates(boxes, bad, 0.5, 3, &out[0], &out[1], &out[2]) != PTHCV_OK &&
              strstr(pthcv_last_error(), "boxes must be [3, 4] (x1, y1, x2, y2), one per anchor, got [3, 3]") && !out[0],
          "ssd_candidates: %s", pthcv_last_error());
    CHECK(pthcv_ssd_candidates(boxes, boxes, 0.5, -1, &out[0], &out[1], &out[2]) != PTHCV_OK &&
              strstr(pthcv_last_error(), "topk_candidates must be >= 0, got -1"),
          "ssd_candidates: %s", pthcv_last_error());
    CHECK(pthcv_ssd_candidates(scores, boxes, 0.5, 3, &out[0], &out[1], &out[2]) != PTHCV_OK &&
              strstr(pthcv_last_error(), "scores must be [anchors, classes], got [2]"),
          "ssd_candidates: %s", pthcv_last_error());
    CHECK(pthcv_ssd_candidates(ints, boxes, 0.5, 3, &out[0], &out[1], &out[2]) != PTHCV_OK &&
              strstr(pthcv_last_error(), "scores must be float32, got int64"),
          "ssd_candidates: %s", pthcv_last_error());
    expect_error(pthcv_image_to_tensor(x), "the picture must be uint8 [H, W, 3] (BGR), got float32 [1, 1, 4, 4]");
    pthcv_tensor *all[] = {bad, boxes, scores, rois, x, ints};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pthcv_tensor_release(all[i]);
}

int main(void)
{
    test_nms();
    test_orders();
    test_roi();
    test_threads_masks();
    test_class_map();
    test_interpolate();
    test_class_map_resized();
    test_ssd_candidates();
    test_batched_threads();
    test_image_to_tensor();
    test_errors();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
