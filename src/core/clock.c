/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * clock.c: the monotonic clock in milliseconds (deadlines of flush, close,
 * transactions and waits; statistics' windows; __gc's shared deadline).
 */
#include <time.h>

#include "core/clock.h"

int64_t prd_clock_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
