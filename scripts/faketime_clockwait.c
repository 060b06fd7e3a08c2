/* Companion to Debian's libfaketime for `make test-shifted`.
 *
 * libfaketime moves CLOCK_MONOTONIC along with the wall clock but does not intercept the glibc 2.30+
 * "clockwait" calls that take an absolute deadline on a named clock. CPython 3.11 waits on locks
 * with sem_clockwait(CLOCK_MONOTONIC, deadline), the deadline read from the moved clock, so the kernel
 * waits until its own monotonic clock reaches a time hundreds of days away: queue.get(timeout=2) and
 * Event.wait(2) never return. These wrappers turn the deadline back into the kernel's clock by the same
 * offset before calling glibc. Loaded after libfaketime in LD_PRELOAD; without libfaketime they are a no-op.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static struct timespec kernel_deadline(clockid_t clock, const struct timespec *deadline) {
    struct timespec moved, real, out;
    clock_gettime(clock, &moved);                 /* through libfaketime */
    syscall(SYS_clock_gettime, clock, &real);     /* the kernel's own */
    long long ns = (deadline->tv_sec - moved.tv_sec) * 1000000000LL + (deadline->tv_nsec - moved.tv_nsec);
    if (ns < 0) ns = 0;
    ns += real.tv_nsec;
    out.tv_sec = real.tv_sec + ns / 1000000000LL;
    out.tv_nsec = ns % 1000000000LL;
    return out;
}

int sem_clockwait(sem_t *sem, clockid_t clock, const struct timespec *deadline) {
    static int (*real)(sem_t *, clockid_t, const struct timespec *);
    if (!real) real = dlsym(RTLD_NEXT, "sem_clockwait");
    struct timespec fixed = kernel_deadline(clock, deadline);
    return real(sem, clock, &fixed);
}

int pthread_cond_clockwait(pthread_cond_t *cond, pthread_mutex_t *mutex, clockid_t clock,
                           const struct timespec *deadline) {
    static int (*real)(pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *);
    if (!real) real = dlsym(RTLD_NEXT, "pthread_cond_clockwait");
    struct timespec fixed = kernel_deadline(clock, deadline);
    return real(cond, mutex, clock, &fixed);
}

int pthread_mutex_clocklock(pthread_mutex_t *mutex, clockid_t clock, const struct timespec *deadline) {
    static int (*real)(pthread_mutex_t *, clockid_t, const struct timespec *);
    if (!real) real = dlsym(RTLD_NEXT, "pthread_mutex_clocklock");
    struct timespec fixed = kernel_deadline(clock, deadline);
    return real(mutex, clock, &fixed);
}
