/* store_sqlite.c: the sqlite backend of the store (store.h). */
#include "store_impl.h"

const struct store_ops store_sqlite_ops = { .name = "sqlite" };
