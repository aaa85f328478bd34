/* s3gen-cfm.c — being written (issue 5). */
#include "cb-common.h"
