/* corpus.h5: tokenised calibration samples (docs/formats.md, "corpus.h5"). */
#include <stdlib.h>
#include <string.h>

#include "formats.h"
#include "h5util.h"

void lukv_corpus_free(lukv_corpus *c) {
  if (!c) return;
  free(c->tokens);
  free(c->offsets);
  free(c->tokenizer);
  free(c->source);
  memset(c, 0, sizeof *c);
}

/* Checks the in-memory corpus; used before writing and after reading so the
 * two can never disagree about what a valid corpus is. */
static int corpus_validate(const char *path, const lukv_corpus *c, lukv_error *err) {
  if (c->vocab_size < 1)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: vocab_size: %lld but must be >= 1", path,
                          (long long)c->vocab_size);
  if (c->n_samples < 1)
    return lukv_error_set(err, LUKV_ERR_SHAPE,
                          "%s: /offsets: zero samples (shape [1]); a corpus needs at least one",
                          path);
  if (c->n_tokens < 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: /tokens: negative n_tokens", path);
  if (!c->offsets || (c->n_tokens > 0 && !c->tokens))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: corpus arrays are NULL", path);
  if (c->offsets[0] != 0)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: /offsets: offsets[0] is %lld but must be 0",
                          path, (long long)c->offsets[0]);
  for (int64_t s = 0; s < c->n_samples; s++)
    if (c->offsets[s + 1] < c->offsets[s])
      return lukv_error_set(err, LUKV_ERR_RANGE,
                            "%s: /offsets: decreasing at index %lld (%lld after %lld)", path,
                            (long long)(s + 1), (long long)c->offsets[s + 1],
                            (long long)c->offsets[s]);
  if (c->offsets[c->n_samples] != c->n_tokens)
    return lukv_error_set(err, LUKV_ERR_RANGE,
                          "%s: /offsets: last offset is %lld but /tokens has %lld tokens", path,
                          (long long)c->offsets[c->n_samples], (long long)c->n_tokens);
  for (int64_t i = 0; i < c->n_tokens; i++)
    if (c->tokens[i] < 0 || c->tokens[i] >= c->vocab_size)
      return lukv_error_set(err, LUKV_ERR_RANGE,
                            "%s: /tokens: token %d at index %lld is outside [0, vocab_size=%lld)",
                            path, (int)c->tokens[i], (long long)i, (long long)c->vocab_size);
  return LUKV_OK;
}

int lukv_corpus_read(const char *path, lukv_corpus *out, lukv_error *err) {
  if (!path || !out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_corpus_read: NULL argument");
  memset(out, 0, sizeof *out);
  hid_t f;
  int rc = lukv_h5_open_read(path, &f, err);
  if (rc != LUKV_OK) return rc;
  lukv_corpus c = {0};
  hsize_t nt[1], no[1];
  void *p;
  if ((rc = lukv_h5_check_header(f, path, LUKV_CORPUS_FORMAT, LUKV_CORPUS_VERSION, err))) goto fail;
  if ((rc = lukv_h5_read_attr_str(f, path, "tokenizer", &c.tokenizer, err))) goto fail;
  if ((rc = lukv_h5_read_attr_int(f, path, "vocab_size", &c.vocab_size, err))) goto fail;
  if ((rc = lukv_h5_read_attr_str(f, path, "source", &c.source, err))) goto fail;
  if ((rc = lukv_h5_read_dataset(f, path, "/tokens", H5T_INTEGER, H5T_NATIVE_INT32, 1, NULL, nt,
                                 &p, err)))
    goto fail;
  c.tokens = p;
  c.n_tokens = (int64_t)nt[0];
  if ((rc = lukv_h5_read_dataset(f, path, "/offsets", H5T_INTEGER, H5T_NATIVE_INT64, 1, NULL, no,
                                 &p, err)))
    goto fail;
  c.offsets = p;
  if (no[0] == 0) {
    rc = lukv_error_set(err, LUKV_ERR_SHAPE, "%s: /offsets: shape [0] but expected [S+1] with S >= 1",
                        path);
    goto fail;
  }
  c.n_samples = (int64_t)no[0] - 1;
  if ((rc = corpus_validate(path, &c, err))) goto fail;
  H5Fclose(f);
  *out = c;
  return LUKV_OK;
fail:
  H5Fclose(f);
  lukv_corpus_free(&c);
  return rc;
}

int lukv_corpus_write(const char *path, const lukv_corpus *c, lukv_error *err) {
  if (!path || !c) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_corpus_write: NULL argument");
  int rc = corpus_validate(path, c, err);
  if (rc != LUKV_OK) return rc;
  lukv_h5_writer w;
  if ((rc = lukv_h5_create(&w, path, LUKV_CORPUS_FORMAT, LUKV_CORPUS_VERSION, err))) return rc;
  hsize_t nt[1] = {(hsize_t)c->n_tokens}, no[1] = {(hsize_t)c->n_samples + 1};
  if ((rc = lukv_h5_write_attr_str(w.file, path, "tokenizer", c->tokenizer, err)) ||
      (rc = lukv_h5_write_attr_int(w.file, path, "vocab_size", c->vocab_size, err)) ||
      (rc = lukv_h5_write_attr_str(w.file, path, "source", c->source, err)) ||
      (rc = lukv_h5_write_dataset(w.file, path, "/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, nt,
                                  c->tokens, err)) ||
      (rc = lukv_h5_write_dataset(w.file, path, "/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, no,
                                  c->offsets, err))) {
    lukv_h5_abort(&w);
    return rc;
  }
  return lukv_h5_commit(&w, err);
}
