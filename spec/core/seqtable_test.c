/*
 * seqtable_test.c: src/core/seqtable.c against a plain model (an array by
 * seq), under the patterns spooling.c makes: seqs put in order and deleted
 * mostly in order, stragglers left far behind, jumps, puts below the
 * window (a re-sent old record), and the memory bound (the ring grows with
 * the entries held, not the span of their seqs). Prints "N passed, N
 * failed"; exits 1 on a failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/seqtable.h"

static int passed, failed;

#define CHECK(cond, ...) do { if (!(cond)) { fail_at(__LINE__, #cond); printf(__VA_ARGS__); \
                                              printf("\n"); return; } } while (0)

static void fail_at(int line, const char *cond)
{
    printf("FAIL line %d: %s: ", line, cond);
    failed++;
}

#define SPAN 200000               /* the model's seqs: 0 .. SPAN-1 */

static char *model;               /* model[seq]: held */
static size_t held;

/* A value for seq: its address in the model, never NULL. */
static void *value_of(uint64_t seq) { return model + seq; }

static int put(prd_seqtable *t, uint64_t seq)
{
    if (model[seq])
        return 0;
    if (prd_seqtable_put(t, seq, value_of(seq)) != 0)
        return -1;
    model[seq] = 1;
    held++;
    return 0;
}

static void del(prd_seqtable *t, uint64_t seq)
{
    prd_seqtable_del(t, seq);
    if (model[seq]) {
        model[seq] = 0;
        held--;
    }
}

/* Every seq of the model, and no other, in t. */
static int agrees(const prd_seqtable *t, uint64_t *bad)
{
    uint64_t seq;

    if (prd_seqtable_count(t) != held) {
        *bad = UINT64_MAX;
        return 0;
    }
    for (seq = 0; seq < SPAN; seq++)
        if (prd_seqtable_get(t, seq) != (model[seq] ? value_of(seq) : NULL)) {
            *bad = seq;
            return 0;
        }
    return 1;
}

static void counted(void *value, void *ud)
{
    (void)value;
    ++*(size_t *)ud;
}

static void reset(prd_seqtable *t)
{
    prd_seqtable_free(t);
    for (uint64_t seq = 0; seq < SPAN; seq++)
        model[seq] = 0;
    held = 0;
}

/* In order, a window of 5,000 in flight: the ring stays near the window. */
static void test_in_order(prd_seqtable *t)
{
    uint64_t seq, bad;

    for (seq = 0; seq < 150000; seq++) {
        CHECK(put(t, seq) == 0, "put %llu", (unsigned long long)seq);
        if (seq >= 5000)
            del(t, seq - 5000);
    }
    CHECK(agrees(t, &bad), "seq %llu", (unsigned long long)bad);
    CHECK(t->ring_cap <= 4 * 8192, "ring of %zu slots for 5,000 held", t->ring_cap);
    CHECK(t->side_count == 0, "%zu on the side", t->side_count);
    passed++;
}

/* One straggler held while 150,000 pass: it goes to the side, the ring
 * does not grow with the span, and it is still found and deleted. */
static void test_straggler(prd_seqtable *t)
{
    uint64_t seq, bad;

    CHECK(put(t, 7) == 0, "put 7");
    for (seq = 8; seq < 160000; seq++) {
        CHECK(put(t, seq) == 0, "put %llu", (unsigned long long)seq);
        if (seq >= 1008)
            del(t, seq - 1000);
    }
    CHECK(agrees(t, &bad), "seq %llu", (unsigned long long)bad);
    CHECK(t->ring_cap <= 8192, "ring of %zu slots for ~1,000 held", t->ring_cap);
    CHECK(prd_seqtable_get(t, 7) == value_of(7), "the straggler");
    del(t, 7);
    CHECK(agrees(t, &bad), "seq %llu", (unsigned long long)bad);
    passed++;
}

/* A jump far past the window, then puts below it (an old record sent
 * again), then everything deleted in reverse. */
static void test_jumps(prd_seqtable *t)
{
    uint64_t seq, bad;
    size_t n = 0;

    for (seq = 100; seq < 3100; seq++)
        CHECK(put(t, seq) == 0, "put %llu", (unsigned long long)seq);
    for (seq = 190000; seq < 191000; seq++)
        CHECK(put(t, seq) == 0, "put %llu", (unsigned long long)seq);
    for (seq = 50; seq < 100; seq++)
        CHECK(put(t, seq) == 0, "put %llu", (unsigned long long)seq);
    CHECK(agrees(t, &bad), "seq %llu", (unsigned long long)bad);
    prd_seqtable_each(t, counted, &n);
    CHECK(n == held, "each saw %zu of %zu", n, held);
    for (seq = SPAN; seq-- > 0;)
        del(t, seq);
    CHECK(agrees(t, &bad), "seq %llu", (unsigned long long)bad);
    CHECK(prd_seqtable_count(t) == 0, "%zu left", prd_seqtable_count(t));
    passed++;
}

/* Many seqs below the window (the side hash's load, its growth and its
 * deletions in random order, which shift the slots after them back). */
static void test_side(prd_seqtable *t)
{
    uint64_t seq, bad;
    long i;

    CHECK(put(t, 150000) == 0, "put 150000");      /* the window starts here */
    for (seq = 0; seq < 20000; seq++)
        CHECK(put(t, seq * 7) == 0, "put %llu", (unsigned long long)(seq * 7));
    CHECK(t->side_count == 20000, "%zu on the side", t->side_count);
    srand(7);
    for (i = 0; i < 15000; i++) {
        del(t, (uint64_t)(rand() % 20000) * 7);
        if (i % 1000 == 0)
            CHECK(agrees(t, &bad), "delete %ld: seq %llu", i, (unsigned long long)bad);
    }
    CHECK(agrees(t, &bad), "seq %llu", (unsigned long long)bad);
    passed++;
}

/* Random puts and deletes around a moving front, checked against the
 * model every 10,000 steps. */
static void test_random(prd_seqtable *t)
{
    uint64_t front = 0, seq, bad;
    long step;

    srand(2026);
    for (step = 0; step < 400000 && front < SPAN - 100; step++) {
        int r = rand() % 100;

        if (r < 45) {
            CHECK(put(t, front++) == 0, "put %llu", (unsigned long long)(front - 1));
        } else if (r < 50 && front > 0) {   /* an older seq: re-sent, or a straggler's */
            seq = (uint64_t)rand() % front;
            CHECK(put(t, seq) == 0, "put %llu", (unsigned long long)seq);
        } else if (front > 0) {             /* mostly the recent ones leave */
            uint64_t back = (uint64_t)(r < 95 ? rand() % 3000 : rand());
            del(t, back < front ? front - 1 - back : (uint64_t)rand() % front);
        }
        if (step % 10000 == 0)
            CHECK(agrees(t, &bad), "step %ld: seq %llu", step, (unsigned long long)bad);
    }
    CHECK(agrees(t, &bad), "seq %llu", (unsigned long long)bad);
    passed++;
}

int main(void)
{
    prd_seqtable t = {0};
    void (*tests[])(prd_seqtable *) = {test_in_order, test_straggler, test_jumps, test_side, test_random};
    size_t i;

    if (!(model = calloc(SPAN, 1)))
        return 2;
    for (i = 0; i < sizeof tests / sizeof *tests; i++) {
        reset(&t);
        tests[i](&t);
    }
    prd_seqtable_free(&t);
    free(model);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
