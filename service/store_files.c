/* store_files.c: the files backend of the store (store.h). */
#include "store_impl.h"

const struct store_ops store_files_ops = { .name = "files" };
