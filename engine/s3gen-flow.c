/* s3gen-flow.c — being written (issue 5). */
#include "cb-common.h"
