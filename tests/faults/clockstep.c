/* A system clock step (what NTP does to a machine whose clock drifted) for one process tree, without
 * root and without touching the machine's clock: LD_PRELOAD this library and the wall clock
 * (CLOCK_REALTIME, time(), gettimeofday()) jumps by the seconds written in the file $CLOCKSTEP_FILE
 * (re-read at most every 50 ms), while CLOCK_MONOTONIC runs on untouched, as on a real step.
 * Built by tests/faults/test_fault_clock_step.py with the machine's C compiler. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static volatile long long offset_ns, checked_ns = -1000000000LL;
static __thread int inside;

static long long ns(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }

static void refresh(void) {
    const char *path = getenv("CLOCKSTEP_FILE");
    struct timespec now;
    double seconds;
    if (!path || inside || real_clock_gettime(CLOCK_MONOTONIC, &now) != 0 || ns(&now) - checked_ns < 50000000LL)
        return;
    checked_ns = ns(&now);
    inside = 1;
    FILE *fh = fopen(path, "r");
    if (fh) {
        if (fscanf(fh, "%lf", &seconds) == 1)
            offset_ns = (long long)(seconds * 1e9);
        fclose(fh);
    }
    inside = 0;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    if (!real_clock_gettime)
        real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        refresh();
        long long t = ns(ts) + offset_ns;
        ts->tv_sec = t / 1000000000LL;
        ts->tv_nsec = t % 1000000000LL;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
