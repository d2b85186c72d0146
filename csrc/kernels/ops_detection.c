/*
 * ops_detection.c -- torchvision.ops' box operations (pthcv.h, "Detection"):
 * box_iou, nms, batched_nms, clip_boxes_to_image, remove_small_boxes, the
 * box coders' decode, and torch's sort and topk orders as indices.
 *
 * Every formula is torchvision 0.14's in float32 with its order of
 * operations, so results match it bit for bit where libm agrees (decode's
 * exp may differ by an ulp). Thresholds follow where torchvision compares:
 * nms (C++) compares the float IoU with the double threshold; tensor
 * comparisons (remove_small_boxes' `ws >= min_size`, clamps) round the
 * Python number to float32 first.
 *
 * Equal scores: nms visits boxes in a stable descending sort (torchvision's
 * C++ kernel: equal scores by index), while batched_nms' last step (per
 * category) and the Python-side sorts and top-k of the detectors use
 * torch's unstable sort and top-k, whose order of ties ops_order.c replays.
 * So the kept set and its order equal torchvision's even with ties.
 *
 * Threads: box_iou by rows; batched_nms above 1000 boxes by categories
 * (each category's nms is independent, the final sort is one thread's).
 */
#include "ops.h"
#include "ops_order.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* boxes checked as float32 [N, 4] and made contiguous */
static pthcv_tensor *boxes_input(pthcv_tensor *b, const char *fn, const char *what, const float **data)
{
    if (b && (b->ndim != 2 || b->shape[1] != 4))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: %s must be [N, 4] (x1, y1, x2, y2), got %s", fn, what, ops_shape(b));
    return ops_input(b, fn, what, data);
}

/* an int64 tensor [n] with the given values */
static pthcv_tensor *index_tensor(const int64_t *idx, int64_t n)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_INT64, 1, &n);
    if (!t) return NULL;
    if (n > 0) {
        int64_t *p = pthcv_tensor_data(t);
        if (!p) {
            pthcv_tensor_release(t);
            return NULL;
        }
        memcpy(p, idx, (size_t)n * sizeof *p);
    }
    return t;
}

static void *alloc_or_fail(size_t n, size_t size, const char *fn)
{
    void *p = malloc((n ? n : 1) * size);
    if (!p) pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", fn);
    return p;
}

/* ---- box_iou ------------------------------------------------------------------ */

typedef struct {
    const float *a, *b;
    float *area_a, *area_b, *out;
    int64_t m;
} iou_ctx;

static void iou_rows(void *vc, int64_t begin, int64_t end)
{
    iou_ctx *c = vc;
    for (int64_t i = begin; i < end; i++) {
        const float *p = c->a + 4 * i;
        for (int64_t j = 0; j < c->m; j++) {
            const float *q = c->b + 4 * j;
            float w = fminf(p[2], q[2]) - fmaxf(p[0], q[0]);
            float h = fminf(p[3], q[3]) - fmaxf(p[1], q[1]);
            w = w < 0.0f ? 0.0f : w;
            h = h < 0.0f ? 0.0f : h;
            float inter = w * h;
            c->out[i * c->m + j] = inter / (c->area_a[i] + c->area_b[j] - inter);
        }
    }
}

pthcv_tensor *pthcv_box_iou(pthcv_tensor *boxes1, pthcv_tensor *boxes2)
{
    const char *fn = "pthcv_box_iou";
    const float *a, *b;
    pthcv_tensor *ac = boxes_input(boxes1, fn, "boxes1", &a), *bc = ac ? boxes_input(boxes2, fn, "boxes2", &b) : NULL;
    pthcv_tensor *out = NULL;
    if (!bc) goto done;
    int64_t n = ac->shape[0], m = bc->shape[0];
    float *areas = alloc_or_fail((size_t)(n + m), sizeof(float), fn);
    if (!areas) goto done;
    for (int64_t i = 0; i < n + m; i++) {
        const float *p = i < n ? a + 4 * i : b + 4 * (i - n);
        areas[i] = (p[2] - p[0]) * (p[3] - p[1]);
    }
    float *y;
    int64_t shape[2] = {n, m};
    out = ops_output(2, shape, &y);
    if (out && n > 0 && m > 0) {
        iou_ctx c = {a, b, areas, areas + n, y, m};
        pthcv_parallel_for(n, ops_grain(m * 8), iou_rows, &c);
    }
    free(areas);
done:
    pthcv_tensor_release(ac);
    pthcv_tensor_release(bc);
    return out;
}

/* ---- nms ------------------------------------------------------------------------- */

/* Boxes j in [from, n) of the visiting order: suppressed[j] set where
 * IoU(box i, box j) > threshold, with torchvision's float32 operations in
 * its order (the boxes as columns x1, y1, x2, y2, area of n floats each).
 * torchvision skips boxes already suppressed; computing them too changes
 * nothing, and lets the loop run in vectors. (double)ovr > threshold is
 * ovr > below, below the largest float <= threshold. */
PTHCV_SIMD
static void suppress_after(const float *cols, int64_t n, int64_t i, int64_t from, float below, uint8_t *suppressed)
{
    const float *x1 = cols, *y1 = cols + n, *x2 = cols + 2 * n, *y2 = cols + 3 * n, *area = cols + 4 * n;
    float px1 = x1[i], py1 = y1[i], px2 = x2[i], py2 = y2[i], pa = area[i];
    for (int64_t j = from; j < n; j++) {
        float xx1 = px1 > x1[j] ? px1 : x1[j], yy1 = py1 > y1[j] ? py1 : y1[j];
        float xx2 = px2 < x2[j] ? px2 : x2[j], yy2 = py2 < y2[j] ? py2 : y2[j];
        float w = xx2 - xx1, h = yy2 - yy1;
        w = 0.0f > w ? 0.0f : w; /* std::max(0, w): NaN stays NaN */
        h = 0.0f > h ? 0.0f : h;
        float inter = w * h;
        float ovr = inter / (pa + area[j] - inter);
        suppressed[j] |= (uint8_t)(ovr > below);
    }
}

/* torchvision's CPU nms over boxes b[0..n) (already offset for batched
 * use) visited in `order`; kept indices (into b) go to keep, their count
 * is returned. suppressed: n zeroed bytes of scratch (by visiting
 * position); cols: 5n floats of scratch. */
static int64_t nms_run(const float *b, const int64_t *order, int64_t n, double threshold, uint8_t *suppressed,
                       float *cols, int64_t *keep)
{
    for (int64_t o = 0; o < n; o++) {
        const float *p = b + 4 * order[o];
        for (int k = 0; k < 4; k++) cols[k * n + o] = p[k];
        cols[4 * n + o] = (p[2] - p[0]) * (p[3] - p[1]);
    }
    float below = (float)threshold;
    if ((double)below > threshold) below = nextafterf(below, -INFINITY);
    int64_t kept = 0;
    for (int64_t oi = 0; oi < n; oi++) {
        if (suppressed[oi]) continue;
        keep[kept++] = order[oi];
        suppress_after(cols, n, oi, oi + 1, below, suppressed);
    }
    return kept;
}

/* order[0..n) = torch.sort(scores, descending=True, stable=stable)[1] */
static void sort_order(const float *scores, int64_t n, int stable, ops_ranked *tmp, int64_t *order)
{
    ops_ranked_fill(tmp, scores, n);
    if (stable) ops_sort_desc_stable(tmp, n);
    else ops_sort_desc(tmp, n);
    for (int64_t i = 0; i < n; i++) order[i] = tmp[i].index;
}

/* scratch for nms over up to n boxes */
typedef struct {
    ops_ranked *ranked;
    int64_t *order, *keep;
    uint8_t *suppressed;
    float *cols; /* 5 floats a box */
} nms_scratch;

static int scratch_alloc(nms_scratch *s, int64_t n, const char *fn)
{
    size_t k = (size_t)(n ? n : 1);
    s->ranked = malloc(k * sizeof *s->ranked);
    s->order = malloc(k * sizeof *s->order);
    s->keep = malloc(k * sizeof *s->keep);
    s->suppressed = calloc(k, 1);
    s->cols = malloc(5 * k * sizeof *s->cols);
    if (s->ranked && s->order && s->keep && s->suppressed && s->cols) return 1;
    pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory for %lld boxes", fn, (long long)n);
    return 0;
}

static void scratch_free(nms_scratch *s)
{
    free(s->ranked);
    free(s->order);
    free(s->keep);
    free(s->suppressed);
    free(s->cols);
}

static pthcv_tensor *check_scores(pthcv_tensor *scores, int64_t n, const char *fn, const float **data)
{
    if (scores && (scores->ndim != 1 || scores->shape[0] != n))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: scores must be [%lld] like the boxes, got %s", fn, (long long)n,
                               ops_shape(scores));
    return ops_input(scores, fn, "scores", data);
}

pthcv_tensor *pthcv_nms(pthcv_tensor *boxes, pthcv_tensor *scores, double iou_threshold)
{
    const char *fn = "pthcv_nms";
    const float *b, *s;
    pthcv_tensor *bc = boxes_input(boxes, fn, "boxes", &b);
    pthcv_tensor *sc = bc ? check_scores(scores, bc->shape[0], fn, &s) : NULL;
    pthcv_tensor *out = NULL;
    nms_scratch w = {0};
    if (sc && scratch_alloc(&w, bc->shape[0], fn)) {
        int64_t n = bc->shape[0];
        sort_order(s, n, 1, w.ranked, w.order);
        int64_t kept = nms_run(b, w.order, n, iou_threshold, w.suppressed, w.cols, w.keep);
        out = index_tensor(w.keep, kept);
    }
    scratch_free(&w);
    pthcv_tensor_release(bc);
    pthcv_tensor_release(sc);
    return out;
}

/* torchvision's _batched_nms_coordinate_trick: boxes moved apart by
 * idx * (max coordinate + 1), then one nms */
static int64_t batched_offset(const float *b, const float *s, const int64_t *idx, int64_t n, double thr, nms_scratch *w,
                              float *moved)
{
    float maxc = b[0];
    for (int64_t i = 0; i < 4 * n && !isnan(maxc); i++) /* torch.max: a NaN wins */
        if (b[i] > maxc || isnan(b[i])) maxc = b[i];
    float step = maxc + 1.0f;
    for (int64_t i = 0; i < n; i++) {
        float off = (float)idx[i] * step;
        for (int k = 0; k < 4; k++) moved[4 * i + k] = b[4 * i + k] + off;
    }
    sort_order(s, n, 1, w->ranked, w->order);
    return nms_run(moved, w->order, n, thr, w->suppressed, w->cols, w->keep);
}

/* ---- batched_nms, one nms per category ------------------------------------------------ */

/* a box's category and index, ordered by category, then index */
typedef struct {
    int64_t category, index;
} category_member;

static int cmp_member(const void *pa, const void *pb)
{
    const category_member *a = pa, *b = pb;
    if (a->category != b->category) return a->category < b->category ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* members[0..n) = the box indices ordered by category, then index;
 * group[g] .. group[g + 1] the members of the g-th category (increasing).
 * Returns the number of categories, -1 when out of memory. Detectors give
 * their boxes category by category already: then no sort is needed. */
static int64_t group_by_category(const int64_t *idx, int64_t n, int64_t *members, int64_t *group)
{
    int sorted = 1;
    for (int64_t i = 1; i < n && sorted; i++) sorted = idx[i - 1] <= idx[i];
    if (sorted) {
        for (int64_t i = 0; i < n; i++) members[i] = i;
    } else {
        category_member *pairs = malloc((size_t)n * sizeof *pairs);
        if (!pairs) return -1;
        for (int64_t i = 0; i < n; i++) pairs[i] = (category_member){idx[i], i};
        qsort(pairs, (size_t)n, sizeof *pairs, cmp_member);
        for (int64_t i = 0; i < n; i++) members[i] = pairs[i].index;
        free(pairs);
    }
    int64_t groups = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || idx[members[i]] != idx[members[i - 1]]) group[groups++] = i;
    group[groups] = n;
    return groups;
}

typedef struct {
    const float *b, *s;
    const int64_t *members, *group; /* group_by_category's */
    double thr;
    uint8_t *kept; /* [n]: 1 where a box survives its category's nms */
    atomic_int no_memory;
} category_ctx;

/* categories [begin, end): each one's boxes (in index order) through nms */
static void nms_categories(void *vc, int64_t begin, int64_t end)
{
    category_ctx *c = vc;
    int64_t most = 0;
    for (int64_t g = begin; g < end; g++)
        if (c->group[g + 1] - c->group[g] > most) most = c->group[g + 1] - c->group[g];
    size_t k = (size_t)most;
    nms_scratch w = {malloc(k * sizeof *w.ranked), malloc(k * sizeof *w.order), malloc(k * sizeof *w.keep),
                     malloc(k), malloc(5 * k * sizeof *w.cols)};
    float *sub = malloc(4 * k * sizeof *sub), *sub_scores = malloc(k * sizeof *sub_scores);
    if (!w.ranked || !w.order || !w.keep || !w.suppressed || !w.cols || !sub || !sub_scores) {
        atomic_store(&c->no_memory, 1);
        goto done;
    }
    for (int64_t g = begin; g < end; g++) {
        const int64_t *members = c->members + c->group[g];
        int64_t m = c->group[g + 1] - c->group[g];
        for (int64_t j = 0; j < m; j++) {
            memcpy(sub + 4 * j, c->b + 4 * members[j], 4 * sizeof *sub);
            sub_scores[j] = c->s[members[j]];
        }
        memset(w.suppressed, 0, k);
        sort_order(sub_scores, m, 1, w.ranked, w.order);
        int64_t kept = nms_run(sub, w.order, m, c->thr, w.suppressed, w.cols, w.keep);
        for (int64_t j = 0; j < kept; j++) c->kept[members[w.keep[j]]] = 1;
    }
done:
    scratch_free(&w);
    free(sub);
    free(sub_scores);
}

/* torchvision's _batched_nms_vanilla: nms per category (each over its
 * boxes in index order; threads take ranges of categories, which share
 * nothing), the kept indices in index order, then sorted by score
 * (torch.sort, descending, unstable) into w->keep. Returns how many, -1
 * when out of memory. */
static int64_t batched_vanilla(const float *b, const float *s, const int64_t *idx, int64_t n, double thr,
                               nms_scratch *w)
{
    int64_t *members = malloc((size_t)n * sizeof *members), *group = malloc((size_t)(n + 1) * sizeof *group);
    float *kept_scores = malloc((size_t)n * sizeof *kept_scores);
    category_ctx c = {b, s, members, group, thr, calloc((size_t)n, 1), 0};
    int64_t groups = members && group && kept_scores && c.kept ? group_by_category(idx, n, members, group) : -1;
    int64_t total = -1;
    if (groups >= 0) pthcv_parallel_for(groups, 1, nms_categories, &c);
    if (groups < 0 || atomic_load(&c.no_memory)) {
        pthcv_fail(PTHCV_ERR_NOMEM, "pthcv_batched_nms: out of memory for %lld boxes", (long long)n);
        goto done;
    }
    total = 0;
    for (int64_t i = 0; i < n; i++)
        if (c.kept[i]) {
            members[total] = i;
            kept_scores[total++] = s[i];
        }
    sort_order(kept_scores, total, 0, w->ranked, w->order); /* Python's .sort(): unstable */
    for (int64_t j = 0; j < total; j++) w->keep[j] = members[w->order[j]];
done:
    free(members);
    free(group);
    free(kept_scores);
    free(c.kept);
    return total;
}

pthcv_tensor *pthcv_batched_nms(pthcv_tensor *boxes, pthcv_tensor *scores, pthcv_tensor *idxs, double iou_threshold)
{
    const char *fn = "pthcv_batched_nms";
    const float *b, *s;
    pthcv_tensor *bc = boxes_input(boxes, fn, "boxes", &b);
    pthcv_tensor *sc = bc ? check_scores(scores, bc->shape[0], fn, &s) : NULL, *ic = NULL, *out = NULL;
    nms_scratch w = {0};
    float *tmp = NULL;
    if (!sc) goto done;
    int64_t n = bc->shape[0];
    if (!idxs || idxs->dtype != PTHCV_INT64 || idxs->ndim != 1 || idxs->shape[0] != n) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: idxs must be int64 [%lld] like the boxes, got %s %s", fn, (long long)n,
                   idxs ? pthcv_dtype_name(idxs->dtype) : "none", ops_shape(idxs));
        goto done;
    }
    ic = pthcv_tensor_contiguous(idxs);
    const int64_t *idx = ic ? pthcv_tensor_data(ic) : NULL;
    if ((n > 0 && !idx) || !scratch_alloc(&w, n, fn) || !(tmp = alloc_or_fail((size_t)n * 4, sizeof *tmp, fn)))
        goto done;
    if (n == 0) {
        out = index_tensor(NULL, 0);
        goto done;
    }
    /* torchvision: boxes.numel() > 4000 on the CPU -> one nms per category */
    int64_t kept = 4 * n > 4000 ? batched_vanilla(b, s, idx, n, iou_threshold, &w)
                                : batched_offset(b, s, idx, n, iou_threshold, &w, tmp);
    if (kept >= 0) out = index_tensor(w.keep, kept);
done:
    free(tmp);
    scratch_free(&w);
    pthcv_tensor_release(bc);
    pthcv_tensor_release(sc);
    pthcv_tensor_release(ic);
    return out;
}

/* ---- clip, remove_small, decode --------------------------------------------------------- */

pthcv_tensor *pthcv_clip_boxes_to_image(pthcv_tensor *boxes, int64_t height, int64_t width)
{
    const char *fn = "pthcv_clip_boxes_to_image";
    if (boxes && (boxes->ndim < 1 || boxes->shape[boxes->ndim - 1] % 2 != 0))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: boxes must be [..., 4k] (x1, y1, x2, y2 ...), got %s", fn,
                               ops_shape(boxes));
    const float *b;
    pthcv_tensor *bc = ops_input(boxes, fn, "boxes", &b);
    if (!bc) return NULL;
    float *y;
    pthcv_tensor *out = ops_output(bc->ndim, bc->shape, &y);
    float hi[2] = {(float)width, (float)height};
    for (int64_t i = 0; out && i < bc->numel; i++) {
        float v = b[i], h = hi[i & 1];
        v = v < 0.0f ? 0.0f : v; /* torch.clamp(min=0, max=w): NaN stays NaN */
        y[i] = v > h ? h : v;
    }
    pthcv_tensor_release(bc);
    return out;
}

pthcv_tensor *pthcv_remove_small_boxes(pthcv_tensor *boxes, double min_size)
{
    const char *fn = "pthcv_remove_small_boxes";
    const float *b;
    pthcv_tensor *bc = boxes_input(boxes, fn, "boxes", &b);
    if (!bc) return NULL;
    int64_t n = bc->shape[0], k = 0;
    int64_t *keep = alloc_or_fail((size_t)n, sizeof *keep, fn);
    pthcv_tensor *out = NULL;
    if (keep) {
        float lim = (float)min_size;
        for (int64_t i = 0; i < n; i++)
            if (b[4 * i + 2] - b[4 * i] >= lim && b[4 * i + 3] - b[4 * i + 1] >= lim) keep[k++] = i;
        out = index_tensor(keep, k);
    }
    free(keep);
    pthcv_tensor_release(bc);
    return out;
}

/* rel_codes [N, 4k] and reference boxes [N, 4], checked */
static int decode_inputs(pthcv_tensor *rel, pthcv_tensor *boxes, const char *fn, pthcv_tensor **rc, const float **r,
                         pthcv_tensor **bc, const float **b)
{
    *rc = *bc = NULL;
    if (rel && (rel->ndim != 2 || rel->shape[1] % 4 != 0 || rel->shape[1] == 0))
        return pthcv_fail(PTHCV_ERR_ARG, "%s: rel_codes must be [N, 4k], got %s", fn, ops_shape(rel));
    if (rel && boxes && boxes->ndim == 2 && boxes->shape[0] != rel->shape[0])
        return pthcv_fail(PTHCV_ERR_ARG, "%s: %s rel_codes for %s boxes", fn, ops_shape(rel), ops_shape(boxes));
    if (!(*rc = ops_input(rel, fn, "rel_codes", r)) || !(*bc = boxes_input(boxes, fn, "boxes", b)))
        return pthcv_last_status();
    return PTHCV_OK;
}

pthcv_tensor *pthcv_box_decode(pthcv_tensor *rel_codes, pthcv_tensor *boxes, const double *weights,
                               double bbox_xform_clip)
{
    const char *fn = "pthcv_box_decode";
    pthcv_tensor *rc, *bc, *out = NULL;
    const float *r, *b;
    if (!weights) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: no weights", fn);
        return NULL;
    }
    if (decode_inputs(rel_codes, boxes, fn, &rc, &r, &bc, &b) == PTHCV_OK) {
        float *y;
        out = ops_output(2, rc->shape, &y);
        int64_t n = rc->shape[0], k = rc->shape[1] / 4;
        float wx = (float)weights[0], wy = (float)weights[1], ww = (float)weights[2], wh = (float)weights[3];
        float clip = (float)bbox_xform_clip;
        for (int64_t i = 0; out && i < n; i++) {
            const float *p = b + 4 * i;
            float width = p[2] - p[0], height = p[3] - p[1];
            float cx = p[0] + 0.5f * width, cy = p[1] + 0.5f * height;
            for (int64_t j = 0; j < k; j++) {
                const float *d = r + i * 4 * k + 4 * j;
                float dx = d[0] / wx, dy = d[1] / wy, dw = d[2] / ww, dh = d[3] / wh;
                dw = dw > clip ? clip : dw; /* torch.clamp(max=clip) */
                dh = dh > clip ? clip : dh;
                float pcx = dx * width + cx, pcy = dy * height + cy;
                float hw = 0.5f * (expf(dw) * width), hh = 0.5f * (expf(dh) * height);
                float *o = y + i * 4 * k + 4 * j;
                o[0] = pcx - hw;
                o[1] = pcy - hh;
                o[2] = pcx + hw;
                o[3] = pcy + hh;
            }
        }
    }
    pthcv_tensor_release(rc);
    pthcv_tensor_release(bc);
    return out;
}

pthcv_tensor *pthcv_box_linear_decode(pthcv_tensor *rel_codes, pthcv_tensor *boxes, int32_t normalize_by_size)
{
    const char *fn = "pthcv_box_linear_decode";
    pthcv_tensor *rc, *bc, *out = NULL;
    const float *r, *b;
    if (rel_codes && rel_codes->ndim == 2 && rel_codes->shape[1] != 4) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: rel_codes must be [N, 4], got %s", fn, ops_shape(rel_codes));
        return NULL;
    }
    if (decode_inputs(rel_codes, boxes, fn, &rc, &r, &bc, &b) == PTHCV_OK) {
        float *y;
        out = ops_output(2, rc->shape, &y);
        for (int64_t i = 0; out && i < rc->shape[0]; i++) {
            const float *p = b + 4 * i, *d = r + 4 * i;
            float cx = 0.5f * (p[0] + p[2]), cy = 0.5f * (p[1] + p[3]);
            float d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3];
            if (normalize_by_size) {
                float w = p[2] - p[0], h = p[3] - p[1];
                d0 *= w, d1 *= h, d2 *= w, d3 *= h;
            }
            y[4 * i] = cx - d0;
            y[4 * i + 1] = cy - d1;
            y[4 * i + 2] = cx + d2;
            y[4 * i + 3] = cy + d3;
        }
    }
    pthcv_tensor_release(rc);
    pthcv_tensor_release(bc);
    return out;
}

/* ---- torch's orders as indices ------------------------------------------------------------ */

static pthcv_tensor *ranked_indices(pthcv_tensor *values, int64_t k, int topk, const char *fn)
{
    if (values && values->ndim != 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: values must be 1-d, got %s", fn, ops_shape(values));
    const float *x;
    pthcv_tensor *xc = ops_input(values, fn, "values", &x);
    if (!xc) return NULL;
    int64_t n = xc->shape[0];
    pthcv_tensor *out = NULL;
    if (topk && (k < 0 || k > n)) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: k = %lld is out of range for %lld values", fn, (long long)k, (long long)n);
    } else {
        ops_ranked *v = alloc_or_fail((size_t)n, sizeof *v, fn);
        int64_t *idx = v ? alloc_or_fail((size_t)n, sizeof *idx, fn) : NULL;
        if (idx) {
            ops_ranked_fill(v, x, n);
            if (topk) ops_topk_desc(v, n, k);
            else ops_sort_desc(v, n), k = n;
            for (int64_t i = 0; i < k; i++) idx[i] = v[i].index;
            out = index_tensor(idx, k);
        }
        free(v);
        free(idx);
    }
    pthcv_tensor_release(xc);
    return out;
}

pthcv_tensor *pthcv_sort_desc_indices(pthcv_tensor *values)
{
    return ranked_indices(values, 0, 0, "pthcv_sort_desc_indices");
}

pthcv_tensor *pthcv_topk_indices(pthcv_tensor *values, int64_t k)
{
    return ranked_indices(values, k, 1, "pthcv_topk_indices");
}
