/* Model identity shared by every tool that records or checks it
 * (lukv-profile writes it into profile.h5, lukv-solve carries it into
 * budgets.h5, lukv-eval and liblukv refuse a table made for other weights):
 * one implementation, so that all of them agree byte for byte. */
#ifndef LUKV_IDENTITY_H
#define LUKV_IDENTITY_H

#include "status.h"

/* sha256 (64 lowercase hex digits + NUL in hex) of the bytes of PATH's
 * *.safetensors files concatenated in sorted file-name order (=
 * tools/reference_profile.py's model_hash); for a path ending in ".gguf",
 * sha256 of that file's bytes (= sha256sum FILE). */
int lukv_model_hash(const char *path, char hex[65], lukv_error *err);

/* A human name for the model: config.json's `_name_or_path` when present and
 * non-empty, else the directory's base name; for a .gguf file its
 * `general.name`, else the file's base name without ".gguf". Caller frees;
 * NULL when out of memory. */
char *lukv_model_display_name(const char *path);

#endif
