/* NumPy .npy (format 1.0) writer for float32 C-order arrays, the interchange
 * kvpress and other Python tools load with numpy.load. */
#ifndef LUKV_NPY_H
#define LUKV_NPY_H

#include <stdint.h>

#include "status.h"

/* Writes data [shape[0], ..., shape[ndim-1]] as '<f4' to PATH (via PATH.tmp
 * and rename: no partial file on failure). 1 <= ndim <= 8. */
int lukv_npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim,
                       lukv_error *err);

#endif
