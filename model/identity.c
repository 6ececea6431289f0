#include "identity.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "sha256.h"

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A path ending in ".gguf": a llama.cpp GGUF file (as lukv_model_open reads it). */
static int is_gguf_path(const char *path) {
  size_t len = strlen(path);
  return len >= 5 && !strcmp(path + len - 5, ".gguf");
}

/* Adds the bytes of file P to s, through buf [BUF]. */
static int hash_file(lukv_sha256 *s, const char *p, unsigned char *buf, size_t cap, lukv_error *err) {
  FILE *f = fopen(p, "rb");
  if (!f) return lukv_error_set(err, LUKV_ERR_IO, "%s: cannot open: %s", p, strerror(errno));
  int rc = LUKV_OK;
  size_t got;
  while ((got = fread(buf, 1, cap, f)) > 0) lukv_sha256_update(s, buf, got);
  if (ferror(f)) rc = lukv_error_set(err, LUKV_ERR_IO, "%s: read error", p);
  fclose(f);
  return rc;
}

/* sha256 of the bytes of DIR's *.safetensors files concatenated in sorted
 * file-name order (= tools/reference_profile.py's model_hash); for a .gguf
 * path, sha256 of the file's bytes (= sha256sum FILE). */
int lukv_model_hash(const char *dir, char hex[65], lukv_error *err) {
  if (is_gguf_path(dir)) {
    enum { GBUF = 1 << 20 };
    unsigned char *buf = malloc(GBUF);
    if (!buf) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", dir);
    lukv_sha256 s;
    lukv_sha256_init(&s);
    int rc = hash_file(&s, dir, buf, GBUF, err);
    free(buf);
    if (rc == LUKV_OK) lukv_sha256_final_hex(&s, hex);
    return rc;
  }
  DIR *d = opendir(dir);
  if (!d) return lukv_error_set(err, LUKV_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
  char **names = NULL;
  int n = 0, cap = 0, rc = LUKV_OK;
  for (struct dirent *e; (e = readdir(d));) {
    size_t len = strlen(e->d_name);
    if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      char **nn = realloc(names, sizeof *nn * (size_t)cap);
      if (!nn) { rc = LUKV_ERR_NOMEM; break; }
      names = nn;
    }
    if (!(names[n] = strdup(e->d_name))) { rc = LUKV_ERR_NOMEM; break; }
    n++;
  }
  closedir(d);
  if (rc != LUKV_OK) {
    lukv_error_set(err, rc, "%s: out of memory listing files", dir);
  } else if (n == 0) {
    rc = lukv_error_set(err, LUKV_ERR_NOTFOUND, "%s: no *.safetensors file to hash", dir);
  }
  if (rc == LUKV_OK) {
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    lukv_sha256 s;
    lukv_sha256_init(&s);
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!buf) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", dir);
    for (int i = 0; i < n && rc == LUKV_OK; i++) {
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", dir, names[i]);
      rc = hash_file(&s, p, buf, BUF, err);
    }
    free(buf);
    if (rc == LUKV_OK) lukv_sha256_final_hex(&s, hex);
  }
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  return rc;
}

/* config.json's `_name_or_path` when present and non-empty, else DIR's base
 * name. A .gguf file: its `general.name` when present and non-empty, else the
 * file's base name without ".gguf". */
char *lukv_model_display_name(const char *dir) {
  if (is_gguf_path(dir)) {
    char gname[1024] = "";
    lukv_gguf_file *g = NULL;
    lukv_error e;
    lukv_error_clear(&e);
    if (lukv_gguf_open(dir, &g, &e) == LUKV_OK &&
        lukv_gguf_get_string(g, "general.name", 0, "", gname, sizeof gname, &e) != LUKV_OK)
      gname[0] = '\0';
    lukv_gguf_close(g);
    if (gname[0]) return strdup(gname);
    size_t len = strlen(dir), b = len;
    while (b > 0 && dir[b - 1] != '/') b--;
    size_t n = len - 5 > b ? len - 5 - b : 0; /* without ".gguf" */
    if (n == 0) return strdup(dir + b);      /* ".gguf" alone keeps its name */
    char *name = malloc(n + 1);
    if (name) {
      memcpy(name, dir + b, n);
      name[n] = '\0';
    }
    return name;
  }
  char p[4096];
  snprintf(p, sizeof p, "%s/config.json", dir);
  char *name = NULL;
  FILE *f = fopen(p, "rb");
  if (f) {
    char *txt = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
      long len = ftell(f);
      if (len > 0 && len < (64L << 20) && fseek(f, 0, SEEK_SET) == 0 && (txt = malloc((size_t)len + 1))) {
        size_t got = fread(txt, 1, (size_t)len, f);
        txt[got] = '\0';
      }
    }
    fclose(f);
    cJSON *root = txt ? cJSON_Parse(txt) : NULL;
    const cJSON *j = root ? cJSON_GetObjectItemCaseSensitive(root, "_name_or_path") : NULL;
    if (cJSON_IsString(j) && j->valuestring[0]) name = strdup(j->valuestring);
    cJSON_Delete(root);
    free(txt);
  }
  if (name) return name;
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/') len--;
  size_t b = len;
  while (b > 0 && dir[b - 1] != '/') b--;
  if (len == b) return strdup(dir); /* "/" or "" */
  name = malloc(len - b + 1);
  if (name) {
    memcpy(name, dir + b, len - b);
    name[len - b] = '\0';
  }
  return name;
}
