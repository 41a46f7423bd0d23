/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * mock.h: librdkafka's mock cluster for tests and examples, and the
 * test hook that raises a fatal error in a producer (core.testing).
 */
#ifndef PRD_KAFKA_MOCK_H
#define PRD_KAFKA_MOCK_H

#include "core/base.h"

#define PRD_MOCK_T "producers.MockCluster"

void prd_mock_open(lua_State *L);
int prd_mock_test_fatal_error(lua_State *L);

#endif
