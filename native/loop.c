/*
 * The request loop: at most one thread at a time reads /dev/fuse.
 *
 * Why not libfuse's fuse_loop_mt: there every idle thread blocks in read()
 * and the kernel wakes them in turn, so the requests of one SQLite commit
 * (frame header, page, fsync) land on threads that each slept through the
 * one before. On this VM a FULL commit then ran at 0.47x of local disk, and
 * at 0.61x with a single thread (A/B in one run; docs/fuse.md).
 *
 * Here the thread that answered a request reads the next one itself, and
 * the others stand by. A second reader is let in when the one request being
 * served may take long:
 *  - lfs_loop_promote(): before a question to JavaScript, which may itself
 *    use the mount before it answers;
 *  - lfs_loop_promote_if_waiting(): before a disk flush, when another
 *    request is already queued;
 *  - the watcher (one standby thread) when a request has held the reader's
 *    place for a whole WATCH_MS (a slow disk, a huge unlink).
 */
#include "lfs.h"

#include <fuse_lowlevel.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>

#define WATCH_MS 10

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;       /* standby threads, and the loop's end */
  pthread_cond_t watch_cv; /* the watcher */
  struct fuse_session *se;
  int readers;             /* 0 or 1: threads in (or about to enter) read() */
  int standby;             /* threads waiting for the reader's place */
  int watching, watch_parked, wanted;
  unsigned long taken;     /* requests read so far */
  int threads, max_threads;
  int exiting;
} lp = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
        .watch_cv = PTHREAD_COND_INITIALIZER};

static void *worker(void *arg);

/* With lp.mu held. */
static void start_thread(void) {
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, worker, NULL) == 0) lp.threads++;
  pthread_attr_destroy(&attr);
}

/* With lp.mu held; returns when this thread should read (or the loop ends).
 * While the mount is idle the watcher sleeps until the next request. */
static void keep_watch(void) {
  lp.watching = 1;
  unsigned long seen = lp.taken;
  while (!lp.exiting && !lp.wanted) {
    if (lp.readers > 0 && lp.taken == seen) {
      lp.watch_parked = 1;
      pthread_cond_wait(&lp.watch_cv, &lp.mu);
      lp.watch_parked = 0;
    } else {
      struct timespec t;
      clock_gettime(CLOCK_REALTIME, &t); /* the condvar's clock */
      t.tv_nsec += WATCH_MS * 1000000L;
      if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
      pthread_cond_timedwait(&lp.watch_cv, &lp.mu, &t);
      if (lp.readers == 0 && lp.taken == seen) break; /* one request held on */
    }
    seen = lp.taken;
  }
  lp.wanted = 0;
  lp.watching = 0;
}

static void *worker(void *arg) {
  struct fuse_buf buf = {.mem = NULL};
  pthread_mutex_lock(&lp.mu);
  for (;;) {
    while (lp.readers > 0 && !lp.exiting) {
      if (!lp.watching) {
        keep_watch();
        continue;
      }
      lp.standby++;
      pthread_cond_wait(&lp.cv, &lp.mu);
      lp.standby--;
    }
    if (lp.exiting) break;
    lp.readers++;
    pthread_mutex_unlock(&lp.mu);
    int res = fuse_session_receive_buf(lp.se, &buf);
    pthread_mutex_lock(&lp.mu);
    lp.readers--;
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0 || fuse_session_exited(lp.se)) {
      fuse_session_exit(lp.se);
      lp.exiting = 1;
      pthread_cond_broadcast(&lp.cv);
      pthread_cond_broadcast(&lp.watch_cv);
      break;
    }
    lp.taken++;
    if (lp.watch_parked) pthread_cond_signal(&lp.watch_cv);
    pthread_mutex_unlock(&lp.mu);
    fuse_session_process_buf(lp.se, &buf);
    pthread_mutex_lock(&lp.mu);
  }
  lp.threads--;
  pthread_cond_broadcast(&lp.cv);
  pthread_mutex_unlock(&lp.mu);
  free(buf.mem);
  return NULL;
}

void lfs_loop_promote(void) {
  pthread_mutex_lock(&lp.mu);
  if (lp.readers == 0 && !lp.exiting) {
    int spare = -1; /* threads left standing by once one is let in */
    if (lp.standby > 0) {
      pthread_cond_signal(&lp.cv);
      spare = lp.standby - 1;
    } else if (lp.watching) {
      lp.wanted = 1;
      pthread_cond_signal(&lp.watch_cv);
      spare = 0;
    }
    if (spare <= 0 && lp.threads < lp.max_threads) start_thread();
  }
  pthread_mutex_unlock(&lp.mu);
}

void lfs_loop_promote_if_waiting(void) {
  struct pollfd p = {.fd = fuse_session_fd(lp.se), .events = POLLIN};
  if (poll(&p, 1, 0) == 1) lfs_loop_promote(); /* which does nothing while another thread reads */
}

/* Serves the session until it ends; returns once every thread has left. */
void lfs_loop_run(struct fuse_session *se, int max_threads) {
  pthread_mutex_lock(&lp.mu);
  lp.se = se;
  lp.readers = lp.standby = lp.threads = lp.exiting = 0;
  lp.watching = lp.watch_parked = lp.wanted = 0;
  lp.max_threads = max_threads < 2 ? 2 : max_threads;
  start_thread(); /* the reader */
  start_thread(); /* the watcher */
  while (lp.threads > 0) pthread_cond_wait(&lp.cv, &lp.mu);
  pthread_mutex_unlock(&lp.mu);
}
