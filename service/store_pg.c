/* store_pg.c: the postgresql backend of the store (store.h). */
#include "store_impl.h"

const struct store_ops store_pg_ops = { .name = "postgresql" };
