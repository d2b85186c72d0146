/*
 * ops_order.h -- the orders torch gives to equal values (ops_order.c).
 *
 * torch.sort(descending=True) (unstable) and torch.topk order their results
 * with libstdc++'s std::sort, std::partial_sort and std::nth_element over
 * (value, index) pairs compared by value only, largest first, NaN before
 * everything. Equal values therefore come out in whatever order those
 * algorithms leave them, not by index. Detectors rank scores with both
 * (torchvision's nms sorts, the heads' per-level top-k), so the same boxes
 * survive only when ties are ordered as torch orders them: these functions
 * replay the algorithms step for step (GCC 12's libstdc++, the one Debian's
 * torch 1.13 is built with).
 */
#ifndef PTHCV_OPS_ORDER_H
#define PTHCV_OPS_ORDER_H

#include <stdint.h>

/* One (value, position) pair. */
typedef struct {
    float value;
    int64_t index;
} ops_ranked;

/* v[0..n) in the order torch.sort(descending=True) gives. */
void ops_sort_desc(ops_ranked *v, int64_t n);

/* v[0..n) in the order torch.sort(descending=True, stable=True) gives:
 * equal values by increasing index (torchvision's nms sorts so). */
void ops_sort_desc_stable(ops_ranked *v, int64_t n);

/* v[0..k) becomes what torch.topk(k) (largest, sorted) returns, in its
 * order; the rest of v is left permuted. 0 <= k <= n. */
void ops_topk_desc(ops_ranked *v, int64_t n, int64_t k);

/* v[i] = (x[i], i) for i < n. */
void ops_ranked_fill(ops_ranked *v, const float *x, int64_t n);

#endif
