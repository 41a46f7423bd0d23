/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * txn.h: the transactional methods, registered with the producer's.
 */
#ifndef PRD_KAFKA_TXN_H
#define PRD_KAFKA_TXN_H

#include "kafka/handle.h"

extern const luaL_Reg prd_txn_methods[];
void prd_txn_close(prd_kafka *p, int timeout_ms);

#endif
