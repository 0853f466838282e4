#include "core/error.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char errbuf[1024];

int eosin_verror(const char *fmt, va_list ap)
{
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	return -1;
}

int eosin_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	eosin_verror(fmt, ap);
	va_end(ap);
	return -1;
}

int eosin_error_prefix(const char *fmt, ...)
{
	char old[sizeof errbuf], pre[512];
	va_list ap;
	memcpy(old, errbuf, sizeof old);
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	snprintf(errbuf, sizeof errbuf, "%s: %s", pre, old);
	return -1;
}

const char *eosin_errmsg(void)
{
	return errbuf;
}
