/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * clock.h: the monotonic clock every deadline is measured on.
 */
#ifndef PRD_CORE_CLOCK_H
#define PRD_CORE_CLOCK_H

#include <stdint.h>

int64_t prd_clock_now_ms(void);

#endif
