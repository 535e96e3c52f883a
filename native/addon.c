/*
 * N-API surface of the addon: mount/unmount, the per-file state JavaScript
 * sets, answers to events, cache invalidation and stores, and byte-range
 * locks.
 * Blocking work (locks that wait, invalidation) runs on libuv's pool.
 */
#include "lfs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) return throw_error(env, "EINVAL", #call); \
  } while (0)

/* Held shared by work that uses the mount off the JavaScript thread, and
 * exclusively by teardown before the mount is destroyed. */
static pthread_rwlock_t mount_lock = PTHREAD_RWLOCK_INITIALIZER;
static int cleanup_hook_added;

static napi_value throw_error(napi_env env, const char *code, const char *msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, text, error;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_string_utf8(env, strerrorname_np(err) ? strerrorname_np(err) : "EIO",
                          NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, text, &error);
  napi_throw(env, error);
  return NULL;
}

/* Returns a malloc'd copy of a string argument, or NULL (with an exception). */
static char *get_string(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    throw_error(env, "EINVAL", "expected a string");
    return NULL;
  }
  char *s = malloc(len + 1);
  if (s) napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    throw_error(env, "EINVAL", "missing arguments");
    return -1;
  }
  return 0;
}

/* arg: the most request threads, as an integer. */
static void *loop_main(void *arg) {
  lfs_loop_run(fuse_get_session(lfs_g.fuse), (int)(intptr_t)arg);
  lfs_event_notify_unmounted(); /* ignored after our own unmount */
  return NULL;
}

/* Forcing the connection closed wakes every loop thread even while other
 * processes still hold files open under the (already detached) mount. */
static void abort_connection(unsigned minor) {
  char path[96];
  snprintf(path, sizeof path, "/sys/fs/fuse/connections/%u/abort", minor);
  int fd = open(path, O_WRONLY);
  if (fd < 0 && errno == ENOENT &&
      mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL) == 0)
    fd = open(path, O_WRONLY);
  if (fd < 0) return;
  (void)!write(fd, "1", 1);
  close(fd);
}

static void teardown(void) {
  if (!lfs_g.fuse) return;
  lfs_events_stop();
  pthread_rwlock_wrlock(&mount_lock);
  fuse_session_exit(fuse_get_session(lfs_g.fuse));
  umount2(lfs_g.mountpoint, MNT_DETACH);
  abort_connection(lfs_g.conn_minor);
  int joined = 1;
  if (lfs_g.loop_running) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    joined = pthread_timedjoin_np(lfs_g.loop_thread, NULL, &deadline) == 0;
    lfs_g.loop_running = 0;
  }
  if (joined) {
    fuse_unmount(lfs_g.fuse);
    fuse_destroy(lfs_g.fuse);
    lfs_files_clear();
  }
  close(lfs_g.backing_fd);
  free(lfs_g.mountpoint);
  free(lfs_g.backing_dir);
  lfs_g.fuse = NULL;
  lfs_g.backing_fd = -1;
  pthread_rwlock_unlock(&mount_lock);
}

static void cleanup_hook(void *arg) { teardown(); }

/* mount(mountDir, backingDir, dispatcher, {debug, maxThreads, allowOther}) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[4], v;
  if (get_args(env, info, 4, argv)) return NULL;
  if (lfs_g.fuse) return throw_error(env, "EBUSY", "this process already serves a mount");
  bool debug = false, allow_other = false;
  uint32_t max_threads = 16;
  bool has;
  if (napi_has_named_property(env, argv[3], "debug", &has) == napi_ok && has &&
      napi_get_named_property(env, argv[3], "debug", &v) == napi_ok)
    napi_get_value_bool(env, v, &debug);
  if (napi_has_named_property(env, argv[3], "allowOther", &has) == napi_ok && has &&
      napi_get_named_property(env, argv[3], "allowOther", &v) == napi_ok)
    napi_get_value_bool(env, v, &allow_other);
  if (napi_has_named_property(env, argv[3], "maxThreads", &has) == napi_ok && has &&
      napi_get_named_property(env, argv[3], "maxThreads", &v) == napi_ok)
    napi_get_value_uint32(env, v, &max_threads);

  char *mountpoint = get_string(env, argv[0]);
  char *backing = mountpoint ? get_string(env, argv[1]) : NULL;
  if (!backing) return free(mountpoint), NULL;
  int bfd = open(backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (bfd < 0) {
    int err = errno;
    free(mountpoint), free(backing);
    return throw_errno(env, err, "data directory");
  }

  char opts[128];
  snprintf(opts, sizeof opts, "fsname=litefs,subtype=litefs,default_permissions%s",
           allow_other ? ",allow_other" : "");
  char *args_v[] = {"litefs", "-o", opts, debug ? "-d" : NULL, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(debug ? 4 : 3, args_v);
  struct fuse *f = fuse_new(&args, &lfs_ops, sizeof lfs_ops, NULL);
  if (!f || fuse_mount(f, mountpoint) != 0) {
    if (f) fuse_destroy(f);
    close(bfd);
    free(mountpoint), free(backing);
    return throw_error(env, "EMOUNT", "fuse mount failed (see the message above)");
  }
  lfs_g.fuse = f;
  lfs_g.mountpoint = mountpoint;
  lfs_g.backing_dir = backing;
  lfs_g.backing_fd = bfd;
  lfs_g.pid = getpid();
  if (lfs_events_start(env, argv[2]) != 0) {
    teardown();
    return throw_error(env, "EINVAL", "cannot create the event function");
  }
  if (pthread_create(&lfs_g.loop_thread, NULL, loop_main, (void *)(intptr_t)max_threads) != 0) {
    teardown();
    return throw_error(env, "EAGAIN", "cannot start the FUSE thread");
  }
  lfs_g.loop_running = 1;
  struct stat st; /* served by the loop just started; asks no JavaScript */
  if (stat(mountpoint, &st) == 0) lfs_g.conn_minor = minor(st.st_dev);
  if (!cleanup_hook_added) {
    napi_add_env_cleanup_hook(env, cleanup_hook, NULL);
    cleanup_hook_added = 1;
  }
  return NULL;
}

static napi_value js_unmount(napi_env env, napi_callback_info info) {
  teardown();
  return NULL;
}

/* reply(id, errno) */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t id;
  int32_t err;
  if (get_args(env, info, 2, argv)) return NULL;
  CHECK(napi_get_value_uint32(env, argv[0], &id));
  CHECK(napi_get_value_int32(env, argv[1], &err));
  napi_value found;
  napi_get_boolean(env, lfs_event_reply(id, err), &found);
  return found;
}

/* pendingNotices(): notices queued and not yet handled by JavaScript */
static napi_value js_pending_notices(napi_env env, napi_callback_info info) {
  napi_value n;
  napi_create_int32(env, lfs_notices_queued(), &n);
  return n;
}

/* deliverNotices(): hands queued notices to the dispatcher now; returns how many */
static napi_value js_deliver_notices(napi_env env, napi_callback_info info) {
  napi_value n;
  napi_create_int32(env, lfs_notices_deliver(env), &n);
  return n;
}

/* pollNotices(on): JavaScript polls for notices (true), or wants to be woken (false) */
static napi_value js_poll_notices(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  bool on = false;
  if (get_args(env, info, 1, argv)) return NULL;
  napi_get_value_bool(env, argv[0], &on);
  lfs_notices_polling(on);
  return NULL;
}

static lfs_file *file_arg(napi_env env, napi_value v) {
  char *path = get_string(env, v);
  if (!path) return NULL;
  lfs_file *f = path[0] == '/' ? lfs_file_get(path, 1) : NULL;
  if (!f) throw_error(env, "EINVAL", "file paths start with '/'");
  free(path);
  return f;
}

/* setFile(path, flags, pageSize) */
static napi_value js_set_file(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint32_t flags, page_size;
  if (get_args(env, info, 3, argv)) return NULL;
  lfs_file *f = file_arg(env, argv[0]);
  if (!f) return NULL;
  CHECK(napi_get_value_uint32(env, argv[1], &flags));
  CHECK(napi_get_value_uint32(env, argv[2], &page_size));
  pthread_mutex_lock(&f->mu);
  f->page_size = page_size;
  pthread_mutex_unlock(&f->mu);
  atomic_store(&f->flags, flags);
  return NULL;
}

/* setVirtual(path, buffer | null, mtimeMs) */
static napi_value js_set_virtual(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double mtime;
  if (get_args(env, info, 3, argv)) return NULL;
  lfs_file *f = file_arg(env, argv[0]);
  if (!f) return NULL;
  CHECK(napi_get_value_double(env, argv[2], &mtime));
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[1], &t));
  if (t == napi_null || t == napi_undefined) {
    lfs_file_set_virtual(f, NULL, 0, mtime);
  } else {
    void *data;
    size_t len;
    CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
    lfs_file_set_virtual(f, data ? data : "", len, mtime);
  }
  /* A virtual file has no page cache; this only drops its cached size. */
  pthread_rwlock_rdlock(&mount_lock);
  if (lfs_g.fuse) fuse_invalidate_path(lfs_g.fuse, f->path);
  pthread_rwlock_unlock(&mount_lock);
  return NULL;
}

/* takeDirtyPages(path) -> Uint32Array of page numbers written since last time */
static napi_value js_take_dirty(napi_env env, napi_callback_info info) {
  napi_value argv[1], ab, arr;
  if (get_args(env, info, 1, argv)) return NULL;
  lfs_file *f = file_arg(env, argv[0]);
  if (!f) return NULL;
  size_t n;
  uint32_t *list = lfs_file_take_dirty(f, &n);
  void *data;
  CHECK(napi_create_arraybuffer(env, n * 4, &data, &ab));
  if (n) memcpy(data, list, n * 4);
  free(list);
  CHECK(napi_create_typedarray(env, napi_uint32_array, n, ab, 0, &arr));
  return arr;
}

/* Work on libuv's pool, settling a promise. */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd, type;
  int flag; /* lock: wait for it; invalidate: the directory entry too */
  int64_t start, len;
  char *path;
  int result, err;
} pool_req;

static napi_value queue(napi_env env, pool_req *r, napi_async_execute_callback exec,
                        napi_async_complete_callback done) {
  napi_value promise, name;
  CHECK(napi_create_promise(env, &r->deferred, &promise));
  napi_create_string_utf8(env, "litefs-fuse", NAPI_AUTO_LENGTH, &name);
  CHECK(napi_create_async_work(env, NULL, name, exec, done, r, &r->work));
  CHECK(napi_queue_async_work(env, r->work));
  return promise;
}

static void settle(napi_env env, pool_req *r, napi_value ok) {
  if (r->err) {
    napi_value code, msg, error;
    const char *name = strerrorname_np(r->err);
    napi_create_string_utf8(env, name ? name : "EIO", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, strerror(r->err), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &error);
    napi_reject_deferred(env, r->deferred, error);
  } else {
    napi_resolve_deferred(env, r->deferred, ok);
  }
  if (r->work) napi_delete_async_work(env, r->work);
  free(r->path);
  free(r);
}

static void lock_exec(napi_env env, void *data) {
  pool_req *r = data;
  struct flock fl = {.l_type = (short)r->type, .l_whence = SEEK_SET, .l_start = r->start,
                     .l_len = r->len};
  int res;
  do res = fcntl(r->fd, r->flag ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
  while (res < 0 && errno == EINTR);
  if (res == 0) r->result = 1;
  else if (errno == EAGAIN || errno == EACCES) r->result = 0;
  else r->err = errno;
}

static void bool_done(napi_env env, napi_status status, void *data) {
  pool_req *r = data;
  napi_value v;
  napi_get_boolean(env, r->result, &v);
  settle(env, r, v);
}

/* lock(fd, type 0 read | 1 write | 2 unlock, start, len, wait) -> Promise<boolean>
 * Open-file-description locks: they belong to the fd, so closing another
 * fd of the same file in this process cannot drop them. */
static napi_value js_lock(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int32_t fd, type;
  bool wait;
  if (get_args(env, info, 5, argv)) return NULL;
  pool_req *r = calloc(1, sizeof *r);
  if (!r) return throw_error(env, "ENOMEM", "out of memory");
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_int32(env, argv[1], &type));
  CHECK(napi_get_value_int64(env, argv[2], &r->start));
  CHECK(napi_get_value_int64(env, argv[3], &r->len));
  CHECK(napi_get_value_bool(env, argv[4], &wait));
  static const int types[] = {F_RDLCK, F_WRLCK, F_UNLCK};
  if (type < 0 || type > 2) return free(r), throw_error(env, "EINVAL", "bad lock type");
  r->fd = fd;
  r->type = types[type];
  r->flag = wait;
  if (wait) return queue(env, r, lock_exec, bool_done);
  /* A lock that does not wait is answered by the kernel at once (these are
   * its local locks: the mount has no lock operation), so it is taken here:
   * a trip through the pool costs two thread wakeups on a busy machine. */
  napi_value promise;
  CHECK(napi_create_promise(env, &r->deferred, &promise));
  lock_exec(env, r);
  bool_done(env, napi_ok, r);
  return promise;
}

static void invalidate_exec(napi_env env, void *data) {
  pool_req *r = data;
  pthread_rwlock_rdlock(&mount_lock);
  if (!lfs_g.fuse) {
    r->err = ENOTCONN;
  } else {
    int res = fuse_invalidate_path(lfs_g.fuse, r->path);
    if (res == 0 && r->flag && !strchr(r->path + 1, '/'))
      res = fuse_lowlevel_notify_inval_entry(fuse_get_session(lfs_g.fuse), FUSE_ROOT_ID,
                                             r->path + 1, strlen(r->path + 1));
    /* ENOENT: the kernel holds nothing for that name, so nothing is stale */
    if (res < 0 && res != -ENOENT) r->err = -res;
    r->result = 1;
  }
  pthread_rwlock_unlock(&mount_lock);
}

/* invalidate(path, alsoEntry) -> Promise<true>: drops the kernel's cached
 * pages and attributes of the file (and its directory entry). */
static napi_value js_invalidate(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool entry;
  if (get_args(env, info, 2, argv)) return NULL;
  CHECK(napi_get_value_bool(env, argv[1], &entry));
  char *path = get_string(env, argv[0]);
  if (!path) return NULL;
  if (path[0] != '/') return free(path), throw_error(env, "EINVAL", "file paths start with '/'");
  pool_req *r = calloc(1, sizeof *r);
  if (!r) return free(path), throw_error(env, "ENOMEM", "out of memory");
  r->path = path;
  r->flag = entry;
  return queue(env, r, invalidate_exec, bool_done);
}

/* storePages(nodeId, offset, data): puts bytes the caller has already
 * written to the backing file into the kernel's cache of the mounted file,
 * so readers see them without a FUSE round trip. The node id is the st_ino
 * fstat reports for a file of this mount (use_ino is off, so libfuse gives
 * its node ids). A page the kernel does not hold whole stays for a read to
 * fetch from the backing file. */
static napi_value js_store_pages(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t ino, off;
  void *data;
  size_t len;
  if (get_args(env, info, 3, argv)) return NULL;
  CHECK(napi_get_value_int64(env, argv[0], &ino));
  CHECK(napi_get_value_int64(env, argv[1], &off));
  CHECK(napi_get_buffer_info(env, argv[2], &data, &len));
  if (ino <= 0 || off < 0) return throw_error(env, "EINVAL", "bad node id or offset");
  int res = -ENOTCONN;
  pthread_rwlock_rdlock(&mount_lock);
  if (lfs_g.fuse) {
    struct fuse_bufvec bufv = FUSE_BUFVEC_INIT(len);
    bufv.buf[0].mem = data;
    res = fuse_lowlevel_notify_store(fuse_get_session(lfs_g.fuse), (fuse_ino_t)ino, off, &bufv, 0);
  }
  pthread_rwlock_unlock(&mount_lock);
  if (res < 0) return throw_errno(env, -res, "storePages");
  return NULL;
}

static void free_aligned(napi_env env, void *data, void *hint) { free(data); }

/* alignedBuffer(size) -> Buffer whose memory starts on a 4096-byte boundary:
 * what writes to a file opened O_DIRECT need (Node's own buffers start
 * anywhere). Freed when the Buffer is collected. */
static napi_value js_aligned_buffer(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int64_t size;
  void *mem;
  if (get_args(env, info, 1, argv)) return NULL;
  CHECK(napi_get_value_int64(env, argv[0], &size));
  if (size <= 0 || size > ((int64_t)1 << 31)) return throw_error(env, "EINVAL", "alignedBuffer: size out of range");
  if (posix_memalign(&mem, 4096, (size_t)size) != 0) return throw_error(env, "ENOMEM", "out of memory");
  if (napi_create_external_buffer(env, (size_t)size, mem, free_aligned, NULL, &out) != napi_ok) {
    free(mem);
    return throw_error(env, "ENOMEM", "alignedBuffer: cannot wrap the memory");
  }
  return out;
}

/* readAhead(fd, offset, length): asks the kernel to read that range of the
 * file into its page cache in the background (posix_fadvise WILLNEED), so
 * that data written past the cache (O_DIRECT) is there again when it is
 * next read. A hint: the kernel may skip it; errors are thrown. */
static napi_value js_read_ahead(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd;
  int64_t offset, length;
  if (get_args(env, info, 3, argv)) return NULL;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_int64(env, argv[1], &offset));
  CHECK(napi_get_value_int64(env, argv[2], &length));
  if (offset < 0 || length < 0) return throw_error(env, "EINVAL", "readAhead: negative offset or length");
  int err = posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_WILLNEED);
  if (err) return throw_errno(env, err, "readAhead");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
      {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
      {"reply", NULL, js_reply, NULL, NULL, NULL, napi_default, NULL},
      {"pendingNotices", NULL, js_pending_notices, NULL, NULL, NULL, napi_default, NULL},
      {"deliverNotices", NULL, js_deliver_notices, NULL, NULL, NULL, napi_default, NULL},
      {"pollNotices", NULL, js_poll_notices, NULL, NULL, NULL, napi_default, NULL},
      {"setFile", NULL, js_set_file, NULL, NULL, NULL, napi_default, NULL},
      {"setVirtual", NULL, js_set_virtual, NULL, NULL, NULL, napi_default, NULL},
      {"takeDirtyPages", NULL, js_take_dirty, NULL, NULL, NULL, napi_default, NULL},
      {"lock", NULL, js_lock, NULL, NULL, NULL, napi_default, NULL},
      {"invalidate", NULL, js_invalidate, NULL, NULL, NULL, napi_default, NULL},
      {"storePages", NULL, js_store_pages, NULL, NULL, NULL, napi_default, NULL},
      {"alignedBuffer", NULL, js_aligned_buffer, NULL, NULL, NULL, napi_default, NULL},
      {"readAhead", NULL, js_read_ahead, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
