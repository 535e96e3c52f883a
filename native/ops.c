/*
 * FUSE operations: passthrough to the backing directory, plus the few
 * checks that notice decision points (commit frames, journal invalidation,
 * changes to database-family files) and ask JavaScript about them.
 *
 * There is deliberately no lock/flock operation: the kernel then keeps
 * SQLite's POSIX locks itself, at full speed.
 */
#include "lfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

lfs_mount lfs_g = {.backing_fd = -1};

static const uint8_t journal_magic[8] = {0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7};

/* "/a/b" -> "a/b", "/" -> "." : relative to the backing directory fd. */
static const char *rel(const char *path) { return path[1] ? path + 1 : "."; }

static lfs_handle *handle(struct fuse_file_info *fi) { return (lfs_handle *)(uintptr_t)fi->fh; }

static uint32_t flags_of(lfs_file *f) { return f ? atomic_load(&f->flags) : 0; }

/* The daemon's own requests (a replica applying pages through the mount)
 * pass the read-only switch. FUSE reports the calling thread's id. */
static int from_daemon(void) {
  pid_t tid = fuse_get_context()->pid;
  if (tid == lfs_g.pid) return 1;
  char p[64];
  snprintf(p, sizeof p, "/proc/self/task/%d", (int)tid);
  return access(p, F_OK) == 0;
}

static int refuse_write(lfs_file *f) { return (flags_of(f) & LFS_READONLY) && !from_daemon(); }

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int ask(lfs_event_type type, const char *path, const char *path2, int64_t arg) {
  lfs_event ev = {.type = type, .path = path, .path2 = path2, .arg = arg};
  return lfs_event_ask(&ev);
}

/* Commit notices tell JavaScript where to read a commit in the WAL, later:
 * before anything may destroy those frames (a WAL restart, truncation,
 * unlink or rename) or read the position they advance (<db>-pos), the
 * queue is settled. The daemon's own thread cannot wait on itself. */
static int settle(void) {
  if (lfs_notices_queued() == 0 || fuse_get_context()->pid == lfs_g.pid) return 0;
  return ask(LFS_EV_SETTLE, "/", NULL, 0);
}

static int settle_wal(lfs_file *f) { return (flags_of(f) & LFS_WAL) ? settle() : 0; }

/* A journal that carried the magic was just invalidated: that is a commit
 * (or a rollback; JavaScript tells them apart by the dirty pages). */
static int journal_invalidated(lfs_file *f, const char *reason) {
  pthread_mutex_lock(&f->mu);
  int was_live = f->journal_live;
  f->journal_live = 0;
  pthread_mutex_unlock(&f->mu);
  if (!was_live) return 0;
  return ask(LFS_EV_JOURNAL_INVALIDATED, f->path, reason, 0);
}

/* After a change to a file: the journal check first, else a plain event. */
static int changed(lfs_file *f, lfs_event_type type, const char *path2, int64_t arg,
                   const char *journal_reason) {
  uint32_t fl = flags_of(f);
  if ((fl & LFS_JOURNAL) && journal_reason) {
    int live;
    pthread_mutex_lock(&f->mu);
    live = f->journal_live;
    pthread_mutex_unlock(&f->mu);
    if (live) return journal_invalidated(f, journal_reason);
  }
  if (fl & LFS_EVENTS) return ask(type, f->path, path2, arg);
  return 0;
}

static void fill_virtual_stat(lfs_file *f, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_mode = S_IFREG | 0444;
  st->st_nlink = 1;
  st->st_uid = getuid();
  st->st_gid = getgid();
  pthread_mutex_lock(&f->mu);
  st->st_size = (off_t)f->virt_len;
  st->st_mtim = st->st_ctim = st->st_atim = f->virt_mtime;
  pthread_mutex_unlock(&f->mu);
  st->st_blksize = 4096;
  st->st_blocks = (st->st_size + 511) / 512;
}

static lfs_file *virtual_file(const char *path) {
  lfs_file *f = path ? lfs_file_get(path, 0) : NULL;
  return f && f->is_virtual ? f : NULL;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  cfg->use_ino = 0;
  cfg->nullpath_ok = 1; /* ops with a handle skip the path lookup */
  cfg->hard_remove = 1; /* unlinked-but-open files live on through their fd */
  cfg->attr_timeout = 1.0;
  cfg->entry_timeout = 1.0;
  cfg->negative_timeout = 0;
  cfg->kernel_cache = 0; /* per file, through keep_cache */
  cfg->auto_cache = 0;
  /* Coherence comes from explicit invalidation only: an mtime change seen
   * on getattr must not drop the primary's page cache. */
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE; /* each write must reach us in order */
  return NULL;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  if (fi) {
    lfs_handle *h = handle(fi);
    if (h->fd < 0) return fill_virtual_stat(h->file, st), 0;
    return fstat(h->fd, st) < 0 ? -errno : 0;
  }
  lfs_file *v = virtual_file(path);
  if (v) return fill_virtual_stat(v, st), 0;
  return fstatat(lfs_g.backing_fd, rel(path), st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int op_access(const char *path, int mask) {
  if (virtual_file(path)) return (mask & W_OK) ? -EACCES : 0;
  return faccessat(lfs_g.backing_fd, rel(path), mask, 0) < 0 ? -errno : 0;
}

typedef struct {
  void *buf;
  fuse_fill_dir_t filler;
} dir_fill;

static void add_virtual(lfs_file *f, void *arg) {
  dir_fill *d = arg;
  if (!strchr(f->path + 1, '/')) d->filler(d->buf, f->path + 1, NULL, 0, 0);
}

/* With nullpath_ok, libfuse passes readdir no path: opendir keeps a copy in
 * the handle for it. */
static int op_opendir(const char *path, struct fuse_file_info *fi) {
  char *copy = strdup(path);
  if (!copy) return -ENOMEM;
  fi->fh = (uint64_t)(uintptr_t)copy;
  return 0;
}

static int op_releasedir(const char *path, struct fuse_file_info *fi) {
  free((char *)(uintptr_t)fi->fh);
  return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
  const char *dir_path = fi && fi->fh ? (const char *)(uintptr_t)fi->fh : path;
  if (!dir_path) return -EBADF;
  int fd = openat(lfs_g.backing_fd, rel(dir_path), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -errno;
  DIR *dir = fdopendir(fd);
  if (!dir) {
    close(fd);
    return -errno;
  }
  struct dirent *de;
  while ((de = readdir(dir)) != NULL) filler(buf, de->d_name, NULL, 0, 0);
  closedir(dir);
  if (strcmp(dir_path, "/") == 0) {
    dir_fill d = {buf, filler};
    lfs_files_for_each_virtual(add_virtual, &d);
  }
  return 0;
}

static int open_handle(lfs_file *f, int fd, struct fuse_file_info *fi) {
  lfs_handle *h = malloc(sizeof *h);
  if (!h) {
    if (fd >= 0) close(fd);
    return -ENOMEM;
  }
  h->fd = fd;
  h->file = f;
  fi->fh = (uint64_t)(uintptr_t)h;
  int direct = fd < 0 || (flags_of(f) & LFS_DIRECT_IO);
  fi->direct_io = direct;
  fi->keep_cache = !direct;
  /* The daemon's own descriptors on its mount close without a flush: a
   * flush writes back the file's dirty pages (SQLite's mmapped -shm)
   * through the mount, to us; when we are killed, the closes run before
   * the connection is torn down and the dying process would wait on itself
   * forever. Our writes never sit in the page cache (no writeback cache). */
  fi->noflush = from_daemon();
  return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi) {
  lfs_file *f = lfs_file_get(path, 1);
  int writing = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
  if (f && f->is_virtual) return writing ? -EACCES : open_handle(f, -1, fi);
  if (writing && refuse_write(f)) return -EROFS;
  if (fi->flags & O_TRUNC) {
    int err = settle_wal(f);
    if (err) return err;
  }
  int fd = openat(lfs_g.backing_fd, rel(path), fi->flags & ~O_NOFOLLOW);
  if (fd < 0) return -errno;
  if (fi->flags & O_TRUNC) {
    int err = changed(f, LFS_EV_TRUNCATE, NULL, 0, "truncate");
    if (err) return close(fd), err;
  }
  return open_handle(f, fd, fi);
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  lfs_file *f = lfs_file_get(path, 1);
  if (f && f->is_virtual) return -EEXIST;
  /* JavaScript sees every new name first: it may claim it (a new database)
   * or refuse it (a replica takes no new databases). */
  int err = ask(LFS_EV_CREATE, path, NULL, mode);
  if (err) return err;
  /* EACCES on a new journal makes SQLite report SQLITE_READONLY */
  if (refuse_write(f)) return -EACCES;
  int fd = openat(lfs_g.backing_fd, rel(path), fi->flags | O_CREAT, mode);
  if (fd < 0) return -errno;
  struct fuse_context *ctx = fuse_get_context();
  if (geteuid() == 0 && (ctx->uid != 0 || ctx->gid != 0)) (void)!fchown(fd, ctx->uid, ctx->gid);
  return open_handle(f, fd, fi);
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  lfs_handle *h = handle(fi);
  if (h->fd < 0) {
    lfs_file *f = h->file;
    int err = settle();
    if (err) return err;
    pthread_mutex_lock(&f->mu);
    size_t n = 0;
    if ((size_t)off < f->virt_len) {
      n = f->virt_len - (size_t)off;
      if (n > size) n = size;
      memcpy(buf, f->virt + off, n);
    }
    pthread_mutex_unlock(&f->mu);
    return (int)n;
  }
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(h->fd, buf + done, size - done, off + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return done ? (int)done : -errno;
    }
    if (n == 0) break;
    done += (size_t)n;
  }
  return (int)done;
}

/* Does this write end exactly at the end of a WAL frame whose header marks
 * a commit? Then the transaction is complete in the WAL: ask JavaScript. */
/* The WAL's page size, from the header SQLite wrote (kept per file). */
static uint32_t wal_page_size(lfs_handle *h) {
  lfs_file *f = h->file;
  uint8_t hdr[32];
  pthread_mutex_lock(&f->mu);
  uint32_t ps = f->wal_page_size;
  pthread_mutex_unlock(&f->mu);
  if (ps == 0) {
    if (pread(h->fd, hdr, 32, 0) != 32) return 0;
    ps = be32(hdr + 8);
    pthread_mutex_lock(&f->mu);
    f->wal_page_size = ps;
    pthread_mutex_unlock(&f->mu);
  }
  return ps >= 512 && ps <= 65536 ? ps : 0;
}

static int ask_wal_commit(lfs_file *f, uint64_t start, uint64_t frame, uint32_t commit, uint32_t ps) {
  lfs_event ev = {.type = LFS_EV_WAL_COMMIT,
                  .path = f->path,
                  .offset = (int64_t)start,
                  .length = (int64_t)frame,
                  .arg = commit,
                  .page_size = ps};
  return (flags_of(f) & LFS_WAL_WAIT) ? lfs_event_ask(&ev) : lfs_event_notify(&ev);
}

/* Does this write end exactly at the end of a WAL frame whose header marks
 * a commit? Then the transaction is complete in the WAL: ask JavaScript. */
static int check_wal_commit(lfs_handle *h, const char *buf, size_t size, off_t off) {
  lfs_file *f = h->file;
  if (off == 0 && size >= 32) {
    pthread_mutex_lock(&f->mu);
    f->wal_page_size = be32((const uint8_t *)buf + 8);
    pthread_mutex_unlock(&f->mu);
    return 0; /* a new WAL header: no frame ends here */
  }
  uint32_t ps = wal_page_size(h);
  if (ps == 0) return 0;
  uint64_t frame = 24 + (uint64_t)ps, end = (uint64_t)off + size;
  if (end < 32 + frame || (end - 32) % frame != 0) return 0;
  uint64_t start = end - frame;
  uint8_t fh[8];
  if (start >= (uint64_t)off) {
    memcpy(fh, buf + (start - (uint64_t)off), 8);
  } else if (pread(h->fd, fh, 8, (off_t)start) != 8) {
    return 0;
  }
  uint32_t commit = be32(fh + 4);
  if (commit == 0) return 0;
  return ask_wal_commit(f, start, frame, commit, ps);
}

/* When a transaction rewrote a frame it had spilled to the WAL earlier,
 * SQLite fixes the frames' checksums only after writing the commit frame,
 * rewriting each frame header (24 bytes) in place, the commit frame's last.
 * Called before the write: is this that last rewrite (then: the page size)? It is when a commit
 * frame header goes over one for the same page and size whose salts are
 * this WAL's or zero (SQLite leaves them zero until the rewrite); a new
 * frame in a reused WAL overwrites one with an older WAL's salts, and a new
 * frame at the end overwrites nothing. */
static uint32_t commit_checksum_rewrite(lfs_handle *h, const char *buf, size_t size, off_t off) {
  if (size != 24 || off < 32) return 0;
  uint32_t ps = wal_page_size(h);
  if (ps == 0 || ((uint64_t)off - 32) % (24 + (uint64_t)ps) != 0) return 0;
  if (be32((const uint8_t *)buf + 4) == 0) return 0; /* not a commit frame */
  uint8_t old[24];
  static const uint8_t no_salts[8];
  if (pread(h->fd, old, 24, off) != 24) return 0;
  if (memcmp(old, buf, 8) != 0) return 0; /* another page or size: a new frame */
  /* Frames written while a rewrite is pending carry zero salts until it. */
  return memcmp(old + 8, buf + 8, 8) == 0 || memcmp(old + 8, no_salts, 8) == 0 ? ps : 0;
}

/* Watch the journal's first header: the magic makes it live, zeros over a
 * live header (PERSIST mode) invalidate it. */
static int check_journal_header(lfs_file *f, const char *buf, size_t size, off_t off) {
  if (off != 0 || size < 8) return 0;
  if (memcmp(buf, journal_magic, 8) == 0) {
    pthread_mutex_lock(&f->mu);
    f->journal_live = 1;
    pthread_mutex_unlock(&f->mu);
    return 0;
  }
  static const uint8_t zeros[8];
  if (memcmp(buf, zeros, 8) == 0) return journal_invalidated(f, "zeroed");
  return 0;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  lfs_handle *h = handle(fi);
  if (h->fd < 0) return -EACCES;
  lfs_file *f = h->file;
  uint32_t fl = flags_of(f);
  if ((fl & LFS_READONLY) && !from_daemon()) return -EROFS;
  if ((fl & LFS_WAL) && off == 0) { /* a new WAL header: the old frames go */
    int err = settle();
    if (err) return err;
  }
  uint32_t recksum_ps = (fl & LFS_WAL) ? commit_checksum_rewrite(h, buf, size, off) : 0;
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(h->fd, buf + done, size - done, off + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    done += (size_t)n;
  }
  if (fl & LFS_DIRTY) lfs_file_record_dirty(f, off, size);
  int err = 0;
  if (fl & LFS_JOURNAL) err = check_journal_header(f, buf, size, off);
  if (!err && recksum_ps) {
    err = ask_wal_commit(f, (uint64_t)off, 24 + (uint64_t)recksum_ps, be32((const uint8_t *)buf + 4), recksum_ps);
  } else if (!err && (fl & LFS_WAL)) {
    err = check_wal_commit(h, buf, size, off);
  }
  return err ? err : (int)size;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  lfs_handle *h = fi ? handle(fi) : NULL;
  lfs_file *f = h ? h->file : lfs_file_get(path, 0);
  if (f && f->is_virtual) return -EACCES;
  if (refuse_write(f)) return -EROFS;
  int res = settle_wal(f);
  if (res) return res;
  if (h) {
    res = ftruncate(h->fd, size);
  } else {
    int fd = openat(lfs_g.backing_fd, rel(path), O_WRONLY);
    if (fd < 0) return -errno;
    res = ftruncate(fd, size);
    close(fd);
  }
  if (res < 0) return -errno;
  return changed(f, LFS_EV_TRUNCATE, NULL, size, size == 0 ? "truncate" : NULL);
}

static int op_unlink(const char *path) {
  lfs_file *f = lfs_file_get(path, 0);
  if (f && f->is_virtual) return -EACCES;
  if (refuse_write(f)) return -EROFS;
  int err = settle_wal(f);
  if (err) return err;
  if (unlinkat(lfs_g.backing_fd, rel(path), 0) < 0) return -errno;
  return changed(f, LFS_EV_UNLINK, NULL, 0, "unlink");
}

static int op_rename(const char *from, const char *to, unsigned int flags) {
  lfs_file *f = lfs_file_get(from, 0), *t = lfs_file_get(to, 0);
  if ((f && f->is_virtual) || (t && t->is_virtual)) return -EACCES;
  if (refuse_write(f) || refuse_write(t)) return -EROFS;
  int err = ((flags_of(f) | flags_of(t)) & LFS_WAL) ? settle() : 0;
  if (err) return err;
  if (renameat2(lfs_g.backing_fd, rel(from), lfs_g.backing_fd, rel(to), flags) < 0) return -errno;
  if ((flags_of(f) | flags_of(t)) & LFS_EVENTS) return ask(LFS_EV_RENAME, from, to, 0);
  return 0;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  lfs_handle *h = handle(fi);
  if (h->fd < 0) return 0;
  lfs_loop_promote_if_waiting(); /* others already queued are served meanwhile */
  if ((datasync ? fdatasync(h->fd) : fsync(h->fd)) < 0) return -errno;
  if (flags_of(h->file) & LFS_FSYNC) return ask(LFS_EV_FSYNC, h->file->path, NULL, datasync);
  return 0;
}

static int op_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi) {
  const char *dir_path = fi && fi->fh ? (const char *)(uintptr_t)fi->fh : path;
  int fd = openat(lfs_g.backing_fd, dir_path ? rel(dir_path) : ".", O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -errno;
  int res = datasync ? fdatasync(fd) : fsync(fd);
  close(fd);
  return res < 0 ? -errno : 0;
}

static int op_release(const char *path, struct fuse_file_info *fi) {
  lfs_handle *h = handle(fi);
  if (h->fd >= 0) close(h->fd);
  free(h);
  return 0;
}

static int op_mkdir(const char *path, mode_t mode) {
  return mkdirat(lfs_g.backing_fd, rel(path), mode) < 0 ? -errno : 0;
}

static int op_rmdir(const char *path) {
  return unlinkat(lfs_g.backing_fd, rel(path), AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
  if (virtual_file(path)) return -EACCES;
  int res = fi && handle(fi)->fd >= 0 ? fchmod(handle(fi)->fd, mode)
                                      : fchmodat(lfs_g.backing_fd, rel(path), mode, 0);
  return res < 0 ? -errno : 0;
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
  if (virtual_file(path)) return -EACCES;
  int res = fi && handle(fi)->fd >= 0
                ? fchown(handle(fi)->fd, uid, gid)
                : fchownat(lfs_g.backing_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);
  return res < 0 ? -errno : 0;
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
  if (fi && handle(fi)->fd < 0) return 0;
  if (!fi && virtual_file(path)) return 0;
  int res = fi ? futimens(handle(fi)->fd, tv)
               : utimensat(lfs_g.backing_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW);
  return res < 0 ? -errno : 0;
}

static int op_statfs(const char *path, struct statvfs *st) {
  return fstatvfs(lfs_g.backing_fd, st) < 0 ? -errno : 0;
}

static int op_fallocate(const char *path, int mode, off_t off, off_t len,
                        struct fuse_file_info *fi) {
  lfs_handle *h = handle(fi);
  if (h->fd < 0) return -EACCES;
  if (refuse_write(h->file)) return -EROFS;
  return fallocate(h->fd, mode, off, len) < 0 ? -errno : 0;
}

const struct fuse_operations lfs_ops = {
    .init = op_init,
    .getattr = op_getattr,
    .access = op_access,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .truncate = op_truncate,
    .unlink = op_unlink,
    .rename = op_rename,
    .fsync = op_fsync,
    .fsyncdir = op_fsyncdir,
    .release = op_release,
    .mkdir = op_mkdir,
    .rmdir = op_rmdir,
    .chmod = op_chmod,
    .chown = op_chown,
    .utimens = op_utimens,
    .statfs = op_statfs,
    .fallocate = op_fallocate,
};
