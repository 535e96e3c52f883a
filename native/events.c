/*
 * Decision points: a FUSE thread hands an event to the JavaScript thread
 * through a thread-safe function and sleeps until JavaScript answers with
 * reply(id, errno). The JavaScript thread never blocks on a FUSE thread.
 *
 * Notices are events nobody waits for (id 0 on the JavaScript side). They
 * wait in a list of their own, which the JavaScript thread empties before
 * it runs any other event (so everything stays first in, first out: a
 * settle asked after notices is answered once they are handled) and
 * whenever it polls. While commits keep coming it polls on a timer and
 * says so (lfs_notices_polling): only a notice that finds it not polling
 * wakes it, since waking the JavaScript thread once per commit costs a
 * writer more than the commit's own fsync wait hides.
 */
#include "lfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LFS_PENDING 1024 /* far more than FUSE threads */
#define LFS_NOTICES_MAX 1024

/* A notice owns a copy of its event; its path points into a file entry,
 * which lives as long as the mount. */
typedef struct queued_notice {
  lfs_event ev;
  struct queued_notice *next;
} queued_notice;

static pthread_mutex_t notice_lock = PTHREAD_MUTEX_INITIALIZER;
static queued_notice *notice_head, **notice_tail = &notice_head;
static _Atomic int notices_queued; /* in the list, plus the one being handled */
static _Atomic int js_polling;     /* JavaScript polls: a notice need not wake it */
static _Atomic int wake_queued;    /* a wake is in the thread-safe function's queue */

#define WAKE ((void *)1) /* queue item: deliver the notices; odd, unlike ids << 1 */

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
static napi_ref dispatcher_ref; /* for lfs_notices_deliver outside call_js */

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

static queued_notice *take_notice(void) {
  pthread_mutex_lock(&notice_lock);
  queued_notice *n = notice_head;
  if (n && !(notice_head = n->next)) notice_tail = &notice_head;
  pthread_mutex_unlock(&notice_lock);
  return n;
}

/* Hands every queued notice to the dispatcher, in order; returns how many. */
static int deliver_notices(napi_env env, napi_value js_cb) {
  napi_value obj, undefined, ignored, exc;
  napi_get_undefined(env, &undefined);
  int count = 0;
  for (queued_notice *n; (n = take_notice()); count++) {
    napi_handle_scope scope; /* up to LFS_NOTICES_MAX at once: free each one's values */
    napi_open_handle_scope(env, &scope);
    napi_create_object(env, &obj);
    set_num(env, obj, "id", 0);
    set_event(env, obj, &n->ev);
    if (napi_call_function(env, undefined, js_cb, 1, &obj, &ignored) != napi_ok)
      napi_get_and_clear_last_exception(env, &exc);
    napi_close_handle_scope(env, scope);
    free(n);
    atomic_fetch_sub(&notices_queued, 1);
  }
  return count;
}

int lfs_notices_deliver(napi_env env) {
  napi_value js_cb;
  if (!dispatcher_ref || napi_get_reference_value(env, dispatcher_ref, &js_cb) != napi_ok || !js_cb) return 0;
  return deliver_notices(env, js_cb);
}

void lfs_notices_polling(int on) { atomic_store(&js_polling, on); }

/* Runs on the JavaScript thread. data is WAKE, an event id shifted left by
 * one, or NULL (the unmounted notice). Queued notices go first. The
 * waiting thread's event is read under pending_lock, so it cannot be
 * finished and unwound meanwhile. */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  uint32_t id = data == WAKE ? 0 : (uint32_t)((uintptr_t)data >> 1);
  if (data == WAKE) atomic_store(&wake_queued, 0);
  if (!env) { /* environment going away: nobody will answer */
    if (id) lfs_event_reply(id, EIO);
    return;
  }
  deliver_notices(env, js_cb);
  if (data == WAKE) return;
  napi_value obj, undefined, ignored;
  napi_create_object(env, &obj);
  napi_get_undefined(env, &undefined);
  set_num(env, obj, "id", id);
  if (id) {
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
    if (id) lfs_event_reply(id, EIO);
  }
}

int lfs_events_start(napi_env env, napi_value dispatcher) {
  napi_value name;
  napi_create_string_utf8(env, "litefs-fuse-events", NAPI_AUTO_LENGTH, &name);
  if (dispatcher_ref) napi_delete_reference(env, dispatcher_ref);
  dispatcher_ref = NULL;
  napi_create_reference(env, dispatcher, 1, &dispatcher_ref);
  atomic_store(&js_polling, 0);
  atomic_store(&wake_queued, 0);
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
  lfs_loop_promote(); /* JavaScript may use the mount before it answers */
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
  n->next = NULL;
  int ok = 0;
  pthread_rwlock_rdlock(&tsfn_lock); /* lfs_events_stop frees the list under the write lock */
  if (accepting) {
    pthread_mutex_lock(&notice_lock);
    *notice_tail = n;
    notice_tail = &n->next;
    atomic_fetch_add(&notices_queued, 1);
    pthread_mutex_unlock(&notice_lock);
    ok = 1;
    if (!atomic_load(&js_polling) && !atomic_exchange(&wake_queued, 1) &&
        napi_call_threadsafe_function(tsfn, WAKE, napi_tsfn_nonblocking) != napi_ok)
      atomic_store(&wake_queued, 0);
  }
  pthread_rwlock_unlock(&tsfn_lock);
  if (ok) return 0;
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
  for (queued_notice *n; (n = take_notice());) { /* their frames stay in the WAL: recovery */
    free(n);
    atomic_fetch_sub(&notices_queued, 1);
  }
  pthread_rwlock_unlock(&tsfn_lock);
  pthread_mutex_lock(&pending_lock);
  for (int i = 0; i < LFS_PENDING; i++)
    if (pending[i]) finish(pending[i], -EIO);
  pthread_mutex_unlock(&pending_lock);
}
