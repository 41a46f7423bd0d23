/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * wake.c: how a transport's thread tells the producer's owner that work
 * is waiting: prd_wake_signal, atomics and write(2) only, safe on any
 * thread. Serving takes the flag (prd_wake_take) before it looks at the
 * queue, so what arrives after sets it again. event_fd()'s pipe
 * (prd_wake_push_fd) lets an event loop wait on it instead of polling.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/wake.h"

void prd_wake_init(prd_wake *w)
{
    w->pipe[0] = w->pipe[1] = -1;
    atomic_init(&w->write_fd, -1);
    atomic_init(&w->ready, 1);
}

/* Marks work waiting and wakes the pipe, if any. Any thread. */
void prd_wake_signal(prd_wake *w)
{
    int fd = atomic_load(&w->write_fd);

    atomic_store(&w->ready, 1);
    if (fd >= 0)
        (void)!write(fd, "1", 1);
}

/* Empties the pipe, if any. */
void prd_wake_clear(prd_wake *w)
{
    char buf[64];
    ssize_t n;

    if (w->pipe[0] < 0)
        return;
    do
        n = read(w->pipe[0], buf, sizeof buf);
    while (n > 0 || (n < 0 && errno == EINTR));
}

/* Before serving: the flag and the pipe cleared; what arrives after
 * sets them again. */
void prd_wake_take(prd_wake *w)
{
    atomic_store(&w->ready, 0);
    prd_wake_clear(w);
}

/*
 * Pushes the pipe's read end, made (non-blocking, close-on-exec) on the
 * first call. Returns 1 when the pipe was just made (the caller signals
 * what already waits), 0 when it existed; raises if no pipe can be made.
 */
int prd_wake_push_fd(lua_State *L, prd_wake *w)
{
    int i, made = 0;

    if (w->pipe[0] < 0) {
        if (pipe(w->pipe) != 0)
            return luaL_error(L, "event_fd: cannot make a pipe");
        for (i = 0; i < 2; i++) {
            fcntl(w->pipe[i], F_SETFL, fcntl(w->pipe[i], F_GETFL) | O_NONBLOCK);
            fcntl(w->pipe[i], F_SETFD, FD_CLOEXEC);
        }
        atomic_store(&w->write_fd, w->pipe[1]);
        made = 1;
    }
    lua_pushinteger(L, w->pipe[0]);
    return made;
}

/* Closes the pipe; prd_wake_signal writes nowhere after. */
void prd_wake_close(prd_wake *w)
{
    if (w->pipe[0] < 0)
        return;
    atomic_store(&w->write_fd, -1);
    close(w->pipe[0]);
    close(w->pipe[1]);
    w->pipe[0] = w->pipe[1] = -1;
}
