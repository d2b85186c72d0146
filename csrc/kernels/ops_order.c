/*
 * ops_order.c -- libstdc++'s sort, partial_sort and nth_element over
 * (value, index) pairs, replayed step for step so that equal values end up
 * where torch puts them (ops_order.h says why).
 *
 * "before(a, b)" is torch's comparator for largest-first orders:
 *   (isnan(a) && !isnan(b)) || a > b
 * The algorithms are libstdc++'s (bits/stl_algo.h, bits/stl_heap.h):
 *   sort          introsort: median-of-three quicksort down to runs of 16
 *                 (heapsort past 2 * floor(log2 n) levels), then one
 *                 insertion sort over everything;
 *   nth_element   introselect: the same partition on the side holding nth
 *                 until 3 or fewer remain (heap-select past the depth
 *                 limit), then an insertion sort;
 *   partial_sort  heap-select of the first k, then heap sort of them;
 * and torch.topk(k) is partial_sort when k * 64 <= n, else nth_element at
 * k - 1 followed by sort of the first k - 1 (aten/src/ATen/native/TopKImpl.h).
 * A stable sort (torch.sort(stable=True), which torchvision's nms uses) has
 * one answer, equal values by index: any sort on (value, index) gives it.
 * The recursion of introsort is bounded by its depth limit, 2 * log2(n).
 */
#include "ops_order.h"
#include <math.h>
#include <stdlib.h>

enum { THRESHOLD = 16 }; /* libstdc++'s _S_threshold */

static inline int before(const ops_ranked *a, const ops_ranked *b)
{
    return (isnan(a->value) && !isnan(b->value)) || a->value > b->value;
}

static inline void swap(ops_ranked *a, ops_ranked *b)
{
    ops_ranked t = *a;
    *a = *b;
    *b = t;
}

static int64_t floor_log2(int64_t n)
{
    int64_t k = 0;
    while (n > 1) {
        n >>= 1;
        k++;
    }
    return k;
}

/* ---- insertion sorts -------------------------------------------------------- */

/* __unguarded_linear_insert: moves v[last] down while it goes before its
 * left neighbour; something at or before it must exist on the left. */
static void unguarded_linear_insert(ops_ranked *v, int64_t last)
{
    ops_ranked val = v[last];
    int64_t next = last - 1;
    while (before(&val, &v[next])) {
        v[last] = v[next];
        last = next;
        next--;
    }
    v[last] = val;
}

static void insertion_sort(ops_ranked *v, int64_t first, int64_t last)
{
    if (first == last) return;
    for (int64_t i = first + 1; i != last; i++) {
        if (before(&v[i], &v[first])) {
            ops_ranked val = v[i];
            for (int64_t j = i; j > first; j--) v[j] = v[j - 1];
            v[first] = val;
        } else {
            unguarded_linear_insert(v, i);
        }
    }
}

static void final_insertion_sort(ops_ranked *v, int64_t first, int64_t last)
{
    if (last - first > THRESHOLD) {
        insertion_sort(v, first, first + THRESHOLD);
        for (int64_t i = first + THRESHOLD; i != last; i++) unguarded_linear_insert(v, i);
    } else {
        insertion_sort(v, first, last);
    }
}

/* ---- heaps (indices relative to `base`) ------------------------------------------ */

static void push_heap(ops_ranked *base, int64_t hole, int64_t top, ops_ranked val)
{
    int64_t parent = (hole - 1) / 2;
    while (hole > top && before(&base[parent], &val)) {
        base[hole] = base[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    base[hole] = val;
}

static void adjust_heap(ops_ranked *base, int64_t hole, int64_t len, ops_ranked val)
{
    int64_t top = hole, child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (before(&base[child], &base[child - 1])) child--;
        base[hole] = base[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        base[hole] = base[child - 1];
        hole = child - 1;
    }
    push_heap(base, hole, top, val);
}

static void make_heap(ops_ranked *v, int64_t first, int64_t last)
{
    int64_t len = last - first;
    if (len < 2) return;
    for (int64_t parent = (len - 2) / 2;; parent--) {
        adjust_heap(v + first, parent, len, v[first + parent]);
        if (parent == 0) return;
    }
}

/* __pop_heap: the top of heap [first, last) goes to `result`, whose value
 * is pushed into the heap instead. */
static void pop_heap(ops_ranked *v, int64_t first, int64_t last, int64_t result)
{
    ops_ranked val = v[result];
    v[result] = v[first];
    adjust_heap(v + first, 0, last - first, val);
}

static void heap_select(ops_ranked *v, int64_t first, int64_t middle, int64_t last)
{
    make_heap(v, first, middle);
    for (int64_t i = middle; i < last; i++)
        if (before(&v[i], &v[first])) pop_heap(v, first, middle, i);
}

static void sort_heap(ops_ranked *v, int64_t first, int64_t last)
{
    while (last - first > 1) {
        last--;
        pop_heap(v, first, last, last);
    }
}

/* ---- partitions ------------------------------------------------------------------- */

static void move_median_to_first(ops_ranked *v, int64_t result, int64_t a, int64_t b, int64_t c)
{
    if (before(&v[a], &v[b])) {
        if (before(&v[b], &v[c])) swap(&v[result], &v[b]);
        else if (before(&v[a], &v[c])) swap(&v[result], &v[c]);
        else swap(&v[result], &v[a]);
    } else if (before(&v[a], &v[c])) {
        swap(&v[result], &v[a]);
    } else if (before(&v[b], &v[c])) {
        swap(&v[result], &v[c]);
    } else {
        swap(&v[result], &v[b]);
    }
}

static int64_t unguarded_partition(ops_ranked *v, int64_t first, int64_t last, int64_t pivot)
{
    for (;;) {
        while (before(&v[first], &v[pivot])) first++;
        last--;
        while (before(&v[pivot], &v[last])) last--;
        if (!(first < last)) return first;
        swap(&v[first], &v[last]);
        first++;
    }
}

static int64_t partition_pivot(ops_ranked *v, int64_t first, int64_t last)
{
    int64_t mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1);
    return unguarded_partition(v, first + 1, last, first);
}

/* ---- the algorithms ----------------------------------------------------------------- */

static void introsort_loop(ops_ranked *v, int64_t first, int64_t last, int64_t depth_limit)
{
    while (last - first > THRESHOLD) {
        if (depth_limit == 0) {
            heap_select(v, first, last, last); /* std::__partial_sort(first, last, last) */
            sort_heap(v, first, last);
            return;
        }
        depth_limit--;
        int64_t cut = partition_pivot(v, first, last);
        introsort_loop(v, cut, last, depth_limit);
        last = cut;
    }
}

static void std_sort(ops_ranked *v, int64_t first, int64_t last)
{
    if (first == last) return;
    introsort_loop(v, first, last, floor_log2(last - first) * 2);
    final_insertion_sort(v, first, last);
}

static void std_nth_element(ops_ranked *v, int64_t first, int64_t nth, int64_t last)
{
    if (first == last || nth == last) return;
    int64_t depth_limit = floor_log2(last - first) * 2;
    while (last - first > 3) {
        if (depth_limit == 0) {
            heap_select(v, first, nth + 1, last);
            swap(&v[first], &v[nth]);
            return;
        }
        depth_limit--;
        int64_t cut = partition_pivot(v, first, last);
        if (cut <= nth) first = cut;
        else last = cut;
    }
    insertion_sort(v, first, last);
}

void ops_sort_desc(ops_ranked *v, int64_t n) { std_sort(v, 0, n); }

/* a total order: by value (NaN first), then by index */
static int cmp_stable(const void *pa, const void *pb)
{
    const ops_ranked *a = pa, *b = pb;
    if (before(a, b)) return -1;
    if (before(b, a)) return 1;
    return (a->index > b->index) - (a->index < b->index);
}

void ops_sort_desc_stable(ops_ranked *v, int64_t n)
{
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_stable);
}

void ops_topk_desc(ops_ranked *v, int64_t n, int64_t k)
{
    if (k <= 0) return;
    if (k * 64 <= n) {
        heap_select(v, 0, k, n); /* std::partial_sort(v, v + k, v + n) */
        sort_heap(v, 0, k);
    } else {
        std_nth_element(v, 0, k - 1, n);
        std_sort(v, 0, k - 1);
    }
}

void ops_ranked_fill(ops_ranked *v, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        v[i].value = x[i];
        v[i].index = i;
    }
}
