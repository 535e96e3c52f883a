/*
 * The per-name state table that JavaScript sets: flags, dirty pages of a
 * database file, and the bytes of virtual files.
 */
#include "lfs.h"

#include <stdlib.h>
#include <string.h>

#define LFS_BUCKETS 1024

static lfs_file *buckets[LFS_BUCKETS];
static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;

static unsigned hash_path(const char *s) {
  unsigned h = 2166136261u; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h % LFS_BUCKETS;
}

static lfs_file *find_locked(const char *path, unsigned b) {
  for (lfs_file *f = buckets[b]; f; f = f->next)
    if (strcmp(f->path, path) == 0) return f;
  return NULL;
}

lfs_file *lfs_file_get(const char *path, int create) {
  unsigned b = hash_path(path);
  pthread_rwlock_rdlock(&table_lock);
  lfs_file *f = find_locked(path, b);
  pthread_rwlock_unlock(&table_lock);
  if (f || !create) return f;

  pthread_rwlock_wrlock(&table_lock);
  f = find_locked(path, b);
  if (!f) {
    f = calloc(1, sizeof *f);
    if (f) f->path = strdup(path);
    if (f && f->path) {
      pthread_mutex_init(&f->mu, NULL);
      f->next = buckets[b];
      buckets[b] = f;
    } else {
      free(f);
      f = NULL;
    }
  }
  pthread_rwlock_unlock(&table_lock);
  return f;
}

/* Pages are numbered from 1, as SQLite does. Each page is listed once. */
void lfs_file_record_dirty(lfs_file *f, off_t off, size_t len) {
  pthread_mutex_lock(&f->mu);
  uint32_t ps = f->page_size;
  if (ps == 0 || len == 0) goto out;
  uint64_t first = (uint64_t)off / ps, last = ((uint64_t)off + len - 1) / ps;
  for (uint64_t i = first; i <= last; i++) {
    size_t byte = i / 8;
    if (byte >= f->dirty_bits_len) {
      size_t n = f->dirty_bits_len ? f->dirty_bits_len : 64;
      while (n <= byte) n *= 2;
      uint8_t *bits = realloc(f->dirty_bits, n);
      if (!bits) goto out;
      memset(bits + f->dirty_bits_len, 0, n - f->dirty_bits_len);
      f->dirty_bits = bits;
      f->dirty_bits_len = n;
    }
    uint8_t mask = (uint8_t)(1u << (i % 8));
    if (f->dirty_bits[byte] & mask) continue;
    if (f->dirty_count == f->dirty_cap) {
      size_t cap = f->dirty_cap ? f->dirty_cap * 2 : 256;
      uint32_t *list = realloc(f->dirty_list, cap * sizeof *list);
      if (!list) goto out;
      f->dirty_list = list;
      f->dirty_cap = cap;
    }
    f->dirty_bits[byte] |= mask;
    f->dirty_list[f->dirty_count++] = (uint32_t)(i + 1);
  }
out:
  pthread_mutex_unlock(&f->mu);
}

/* Hands the recorded pages to the caller (malloc'd) and starts afresh. */
uint32_t *lfs_file_take_dirty(lfs_file *f, size_t *count) {
  pthread_mutex_lock(&f->mu);
  uint32_t *list = f->dirty_list;
  *count = f->dirty_count;
  for (size_t i = 0; i < f->dirty_count; i++) {
    uint32_t idx = f->dirty_list[i] - 1;
    f->dirty_bits[idx / 8] &= (uint8_t) ~(1u << (idx % 8));
  }
  f->dirty_list = NULL;
  f->dirty_count = f->dirty_cap = 0;
  pthread_mutex_unlock(&f->mu);
  return list;
}

void lfs_file_set_virtual(lfs_file *f, const void *data, size_t len, double mtime_ms) {
  char *copy = NULL;
  if (data && len) {
    copy = malloc(len);
    if (copy) memcpy(copy, data, len);
  }
  pthread_mutex_lock(&f->mu);
  free(f->virt);
  f->virt = copy;
  f->virt_len = copy ? len : 0;
  f->is_virtual = data != NULL;
  if (mtime_ms > 0) {
    f->virt_mtime.tv_sec = (time_t)(mtime_ms / 1000);
    f->virt_mtime.tv_nsec = (long)((mtime_ms - (double)f->virt_mtime.tv_sec * 1000) * 1e6);
  } else {
    clock_gettime(CLOCK_REALTIME, &f->virt_mtime);
  }
  pthread_mutex_unlock(&f->mu);
}

void lfs_files_for_each_virtual(void (*fn)(lfs_file *, void *), void *arg) {
  pthread_rwlock_rdlock(&table_lock);
  for (int b = 0; b < LFS_BUCKETS; b++)
    for (lfs_file *f = buckets[b]; f; f = f->next)
      if (f->is_virtual) fn(f, arg);
  pthread_rwlock_unlock(&table_lock);
}

/* Only after the FUSE loop has stopped: no handle points here any more. */
void lfs_files_clear(void) {
  pthread_rwlock_wrlock(&table_lock);
  for (int b = 0; b < LFS_BUCKETS; b++) {
    lfs_file *f = buckets[b];
    while (f) {
      lfs_file *next = f->next;
      free(f->path);
      free(f->dirty_bits);
      free(f->dirty_list);
      free(f->virt);
      pthread_mutex_destroy(&f->mu);
      free(f);
      f = next;
    }
    buckets[b] = NULL;
  }
  pthread_rwlock_unlock(&table_lock);
}
