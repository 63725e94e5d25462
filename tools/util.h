/* SPDX-License-Identifier: GPL-2.0 */
/* util.h - small helpers shared by the C tools. */
#ifndef __TOOLS_UTIL_H
#define __TOOLS_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#endif /* __TOOLS_UTIL_H */
