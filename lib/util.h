/* SPDX-License-Identifier: GPL-2.0 */
/* util.h - what the C programs of the tests and the benchmark share. */
#ifndef __LIB_UTIL_H
#define __LIB_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static inline void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, ": %s", strerror(err));
	fputc('\n', stderr);
	exit(1);
}

/*
 * The test payload: byte i of stream SEED is byte i % 8 of
 * splitmix64(SEED << 40 + i / 8).  Any offset can be generated on its own, so
 * a receiver checks each chunk where it lands and a lost, reordered or
 * foreign byte is caught at its exact offset.
 */
static inline uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline void pattern(uint32_t seed, uint64_t off, unsigned char *buf,
			   size_t len)
{
	uint64_t base = (uint64_t)seed << 40;

	for (size_t i = 0; i < len; ) {
		uint64_t v = splitmix(base + ((off + i) >> 3));
		unsigned int b = (off + i) & 7;

		for (; b < 8 && i < len; b++, i++)
			buf[i] = v >> (8 * b);
	}
}

/*
 * ADDR (numeric, v4 or v6) and PORT as a socket address; false if ADDR is
 * neither.
 */
static inline bool parse_addr(const char *addr, int port,
			      struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return true;
	}
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return true;
	}
	return false;
}

#endif /* __LIB_UTIL_H */
