/* A wall clock that steps, for one process: LD_PRELOAD this library and the wall time the
 * process reads (clock_gettime on CLOCK_REALTIME*, gettimeofday, time) moves by the seconds
 * written in the file named by CLOCK_SHIFT_FILE, re-read at most every 50 ms. The monotonic
 * clocks and sleeping are left alone, as when NTP or an operator steps the system clock.
 * libfaketime cannot stand in here: with its monotonic clock left alone, its clock_nanosleep
 * answers EINVAL (0.9.10), so every Python time.sleep raises.
 * Build: cc -shared -fPIC -O2 -o clockshift.so clockshift.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static volatile long long shift_ns;
static volatile long long checked_ns = -1000000000LL;

static long long monotonic_ns(void) {
    struct timespec now;
    real_clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000000000LL + now.tv_nsec;
}

static void refresh(void) {
    if (real_clock_gettime == NULL)
        real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    long long now = monotonic_ns();
    if (now - checked_ns < 50000000LL)
        return;
    checked_ns = now;
    const char *path = getenv("CLOCK_SHIFT_FILE");
    if (path == NULL)
        return;
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return;
    double seconds;
    if (fscanf(file, "%lf", &seconds) == 1)
        shift_ns = (long long)(seconds * 1e9);
    fclose(file);
}

int clock_gettime(clockid_t id, struct timespec *out) {
    refresh();
    int rc = real_clock_gettime(id, out);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        long long ns = out->tv_sec * 1000000000LL + out->tv_nsec + shift_ns;
        out->tv_sec = ns / 1000000000LL;
        out->tv_nsec = ns % 1000000000LL;
    }
    return rc;
}

int gettimeofday(struct timeval *out, void *zone) {
    (void)zone;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    out->tv_sec = now.tv_sec;
    out->tv_usec = now.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (out != NULL)
        *out = now.tv_sec;
    return now.tv_sec;
}
