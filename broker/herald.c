/* broker/herald.c - the one instance of struct herald (see herald.h). */
#include "herald.h"

struct herald srv;
