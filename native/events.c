/*
 * Decision points: a FUSE thread hands an event to the JavaScript thread
 * through a thread-safe function and sleeps until JavaScript answers with
 * reply(id, errno). The JavaScript thread never blocks on a FUSE thread.
 *
 * Notices are events nobody waits for (id 0 on the JavaScript side): the
 * queue is first in, first out, so an ask queued after notices is answered
 * only once they have been handled (a settle event uses exactly that).
 */
#include "lfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LFS_PENDING 1024 /* far more than FUSE threads */
#define LFS_NOTICES_MAX 1024

/* A notice owns a copy of its event; its path points into a file entry,
 * which lives as long as the mount. Tagged with bit 0 in the queue. */
typedef struct {
  lfs_event ev;
} queued_notice;

static _Atomic int notices_queued;

typedef struct {
  const lfs_event *ev; /* lives on the waiting FUSE thread's stack */
  uint32_t id;
  int done, result;
  pthread_cond_t cv;
} pending_event;

static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static pending_event *pending[LFS_PENDING];
static uint32_t next_id;

/* Guards the thread-safe function against release while a thread calls it. */
static pthread_rwlock_t tsfn_lock = PTHREAD_RWLOCK_INITIALIZER;
static napi_threadsafe_function tsfn;
static int accepting;

static const char *type_names[] = {
    [LFS_EV_CREATE] = "create",
    [LFS_EV_UNLINK] = "unlink",
    [LFS_EV_RENAME] = "rename",
    [LFS_EV_TRUNCATE] = "truncate",
    [LFS_EV_FSYNC] = "fsync",
    [LFS_EV_WAL_COMMIT] = "walCommit",
    [LFS_EV_JOURNAL_INVALIDATED] = "journalInvalidated",
    [LFS_EV_UNMOUNTED] = "unmounted",
    [LFS_EV_SETTLE] = "settle",
};

static void finish(pending_event *p, int result) {
  /* caller holds pending_lock */
  p->result = result;
  p->done = 1;
  pending[p->id % LFS_PENDING] = NULL;
  pthread_cond_signal(&p->cv);
}

int lfs_event_reply(uint32_t id, int err) {
  pthread_mutex_lock(&pending_lock);
  pending_event *p = pending[id % LFS_PENDING];
  int found = p && p->id == id;
  if (found) finish(p, err > 0 ? -err : err);
  pthread_mutex_unlock(&pending_lock);
  return found;
}

static void set_str(napi_env env, napi_value obj, const char *key, const char *val) {
  napi_value v;
  if (!val) return;
  napi_create_string_utf8(env, val, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, key, v);
}

static void set_num(napi_env env, napi_value obj, const char *key, double val) {
  napi_value v;
  napi_create_double(env, val, &v);
  napi_set_named_property(env, obj, key, v);
}

static void set_event(napi_env env, napi_value obj, const lfs_event *ev) {
  set_str(env, obj, "type", type_names[ev->type]);
  set_str(env, obj, "path", ev->path);
  set_str(env, obj, "path2", ev->path2);
  set_num(env, obj, "offset", (double)ev->offset);
  set_num(env, obj, "length", (double)ev->length);
  set_num(env, obj, "arg", (double)ev->arg);
  set_num(env, obj, "pageSize", ev->page_size);
}

/* Runs on the JavaScript thread. data is a notice tagged with bit 0, or an
 * event id shifted left by one (0: the unmounted notice). The waiting
 * thread's event is read under pending_lock, so it cannot be finished and
 * unwound meanwhile. */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  queued_notice *notice = NULL;
  uint32_t id = 0;
  if ((uintptr_t)data & 1) notice = (queued_notice *)((uintptr_t)data & ~(uintptr_t)1);
  else id = (uint32_t)((uintptr_t)data >> 1);
  napi_value obj, undefined, ignored;
  if (!env) goto done; /* environment going away: nobody will answer */
  napi_create_object(env, &obj);
  napi_get_undefined(env, &undefined);
  set_num(env, obj, "id", id);
  if (notice) {
    set_event(env, obj, &notice->ev);
  } else if (id) {
    pthread_mutex_lock(&pending_lock);
    pending_event *p = pending[id % LFS_PENDING];
    if (!p || p->id != id) { /* already failed by lfs_events_stop */
      pthread_mutex_unlock(&pending_lock);
      return;
    }
    set_event(env, obj, p->ev);
    pthread_mutex_unlock(&pending_lock);
  } else {
    set_str(env, obj, "type", type_names[LFS_EV_UNMOUNTED]);
  }
  if (napi_call_function(env, undefined, js_cb, 1, &obj, &ignored) != napi_ok) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    env = NULL; /* answered below */
  }
done:
  if (notice) {
    free(notice);
    atomic_fetch_sub(&notices_queued, 1);
  } else if (id && !env) {
    lfs_event_reply(id, EIO);
  }
}

int lfs_events_start(napi_env env, napi_value dispatcher) {
  napi_value name;
  napi_create_string_utf8(env, "litefs-fuse-events", NAPI_AUTO_LENGTH, &name);
  pthread_rwlock_wrlock(&tsfn_lock);
  napi_status st = napi_create_threadsafe_function(env, dispatcher, NULL, name, 0, 1, NULL, NULL,
                                                   NULL, call_js, &tsfn);
  accepting = st == napi_ok;
  pthread_rwlock_unlock(&tsfn_lock);
  return st == napi_ok ? 0 : -1;
}

static int enqueue(void *data) {
  int ok = 0;
  pthread_rwlock_rdlock(&tsfn_lock);
  if (accepting) ok = napi_call_threadsafe_function(tsfn, data, napi_tsfn_nonblocking) == napi_ok;
  pthread_rwlock_unlock(&tsfn_lock);
  return ok;
}

int lfs_event_ask(const lfs_event *ev) {
  pending_event p = {.ev = ev};
  pthread_cond_init(&p.cv, NULL);
  pthread_mutex_lock(&pending_lock);
  for (int tries = 0;; tries++) {
    p.id = ++next_id;
    if (p.id == 0) continue; /* 0 is the unmounted notice */
    if (!pending[p.id % LFS_PENDING]) break;
    if (tries > LFS_PENDING) {
      pthread_mutex_unlock(&pending_lock);
      pthread_cond_destroy(&p.cv);
      return -EBUSY;
    }
  }
  pending[p.id % LFS_PENDING] = &p;
  pthread_mutex_unlock(&pending_lock);

  if (!enqueue((void *)((uintptr_t)p.id << 1))) lfs_event_reply(p.id, EIO);

  pthread_mutex_lock(&pending_lock);
  while (!p.done) pthread_cond_wait(&p.cv, &pending_lock);
  pthread_mutex_unlock(&pending_lock);
  pthread_cond_destroy(&p.cv);
  return p.result;
}

int lfs_event_notify(const lfs_event *ev) {
  if (atomic_load(&notices_queued) >= LFS_NOTICES_MAX) return lfs_event_ask(ev);
  queued_notice *n = malloc(sizeof *n);
  if (!n) return lfs_event_ask(ev);
  n->ev = *ev;
  atomic_fetch_add(&notices_queued, 1);
  if (enqueue((void *)((uintptr_t)n | 1))) return 0;
  atomic_fetch_sub(&notices_queued, 1);
  free(n);
  return -EIO;
}

int lfs_notices_queued(void) { return atomic_load(&notices_queued); }

void lfs_event_notify_unmounted(void) { enqueue(NULL); }

/* Stops taking events, fails the waiting ones, and releases the function. */
void lfs_events_stop(void) {
  pthread_rwlock_wrlock(&tsfn_lock);
  if (accepting) {
    accepting = 0;
    napi_release_threadsafe_function(tsfn, napi_tsfn_abort);
  }
  pthread_rwlock_unlock(&tsfn_lock);
  pthread_mutex_lock(&pending_lock);
  for (int i = 0; i < LFS_PENDING; i++)
    if (pending[i]) finish(pending[i], -EIO);
  pthread_mutex_unlock(&pending_lock);
}
