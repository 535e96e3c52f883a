/*
 * Shared declarations of the litefs FUSE addon.
 *
 * The C side moves bytes and notices decision points; JavaScript decides.
 * One mount per process (the daemon serves one directory).
 */
#pragma once

#include <fuse.h>
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* Per-file flags, set by JavaScript for names it cares about. */
enum {
  LFS_EVENTS = 1 << 0,    /* report create/unlink/rename/truncate */
  LFS_WAL = 1 << 1,       /* report writes that complete a WAL commit frame */
  LFS_JOURNAL = 1 << 2,   /* report invalidation of a live rollback journal */
  LFS_DIRTY = 1 << 3,     /* record the page numbers written */
  LFS_READONLY = 1 << 4,  /* refuse writes, except the daemon's own */
  LFS_DIRECT_IO = 1 << 5, /* bypass the kernel page cache */
  LFS_FSYNC = 1 << 6,     /* report fsync (apart: it is on the commit path) */
  LFS_WAL_WAIT = 1 << 7,  /* commit frames wait for JavaScript's answer (else: a notice) */
};

/* What we know about one name (path from the mount root, with leading '/').
 * Entries are never freed while mounted, so handles may point at them. */
typedef struct lfs_file {
  struct lfs_file *next; /* hash chain */
  char *path;
  _Atomic uint32_t flags;
  pthread_mutex_t mu; /* guards everything below */
  uint32_t page_size; /* database page size, for dirty-page recording */
  uint8_t *dirty_bits;
  size_t dirty_bits_len;
  uint32_t *dirty_list;
  size_t dirty_count, dirty_cap;
  int journal_live;       /* the journal's header carries the magic */
  uint32_t wal_page_size; /* from the WAL header, 0 until seen */
  int is_virtual;
  char *virt;
  size_t virt_len;
  struct timespec virt_mtime;
} lfs_file;

/* fi->fh of an open file: the backing fd (-1 for a virtual file). */
typedef struct {
  int fd;
  lfs_file *file;
} lfs_handle;

typedef struct {
  struct fuse *fuse;
  char *mountpoint;
  char *backing_dir;
  int backing_fd;
  pthread_t loop_thread;
  int loop_running;
  unsigned conn_minor; /* fusectl connection id, for abort at teardown */
  pid_t pid;
} lfs_mount;

extern lfs_mount lfs_g;

/* files.c */
lfs_file *lfs_file_get(const char *path, int create);
void lfs_file_record_dirty(lfs_file *f, off_t off, size_t len);
uint32_t *lfs_file_take_dirty(lfs_file *f, size_t *count);
void lfs_file_set_virtual(lfs_file *f, const void *data, size_t len, double mtime_ms);
void lfs_files_for_each_virtual(void (*fn)(lfs_file *, void *), void *arg);
void lfs_files_clear(void);

/* events.c: a FUSE thread asks JavaScript and waits for its answer. */
typedef enum {
  LFS_EV_CREATE,
  LFS_EV_UNLINK,
  LFS_EV_RENAME,
  LFS_EV_TRUNCATE,
  LFS_EV_FSYNC,
  LFS_EV_WAL_COMMIT,
  LFS_EV_JOURNAL_INVALIDATED,
  LFS_EV_UNMOUNTED,
  LFS_EV_SETTLE, /* reaches JavaScript behind every notice queued before it */
} lfs_event_type;

typedef struct {
  lfs_event_type type;
  const char *path;
  const char *path2; /* rename target, or the journal invalidation reason */
  int64_t offset, length;
  int64_t arg; /* commit size in pages, new size, or datasync */
  uint32_t page_size;
} lfs_event;

int lfs_events_start(napi_env env, napi_value dispatcher);
int lfs_event_ask(const lfs_event *ev); /* 0 or -errno */
/* Queues the event without waiting (0, or -EIO once stopping). Past a bound
 * on queued notices it asks instead, so a slow JavaScript thread slows
 * writers rather than letting the queue grow. */
int lfs_event_notify(const lfs_event *ev);
int lfs_notices_queued(void);
/* On the JavaScript thread: hands the queued notices to the dispatcher now
 * (returns how many), and says whether JavaScript polls for them. */
int lfs_notices_deliver(napi_env env);
void lfs_notices_polling(int on);
void lfs_event_notify_unmounted(void);  /* no answer awaited */
int lfs_event_reply(uint32_t id, int err);
void lfs_events_stop(void);

/* ops.c */
extern const struct fuse_operations lfs_ops;

/* loop.c */
void lfs_loop_run(struct fuse_session *se, int max_threads);
void lfs_loop_promote(void);
void lfs_loop_promote_if_waiting(void);
