/* errors.c: the text of each enum gd_err. */
#include "base.h"

const char *gd_strerror(int err)
{
	switch (err) {
	case GD_OK:
		return "success";
	case GD_ENOMEM:
		return "out of memory";
	case GD_EINVAL:
		return "invalid value";
	case GD_EIO:
		return "input/output error";
	case GD_ETIMEDOUT:
		return "no answer in time";
	case GD_EPROTO:
		return "malformed frame";
	case GD_EDENIED:
		return "refused by policy";
	case GD_EFULL:
		return "buffer full";
	case GD_ECONFIG:
		return "invalid configuration";
	case GD_ETLS:
		return "TLS failure";
	case GD_ENOTCONN:
		return "link down";
	case GD_EDEVICE:
		return "device exception";
	case GD_ERANGE:
		return "value out of range for its type";
	}
	return "unknown error";
}
