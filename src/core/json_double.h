/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * json_double.h: the shortest decimal that reads back as a double
 * (json_double.c explains how).
 */
#ifndef PRODUCERS_JSON_DOUBLE_H
#define PRODUCERS_JSON_DOUBLE_H

/* Room json_double_digits writes in: a double's 17 digits at most. */
#define JSON_DOUBLE_DIGITS 17

/*
 * x, finite and > 0, as the shortest decimal that reads back as x (strtod
 * rounding to nearest, ties to even); of the decimals that short, the
 * nearest to x, the one with an even last digit on a tie: what Python's
 * repr, Ryu and JavaScript give. Its digits are written at out (room for
 * JSON_DOUBLE_DIGITS), no trailing zero, their count (1 to 17) returned,
 * and *exp10 is the power of ten of the first (x = 0.0123 gives "123",
 * -2). No locale, no printf.
 */
int json_double_digits(double x, char *out, int *exp10);

#endif
