/* The relay's engine: epoll events of plain tunnels, relayed with recv/send and splice(2) by the
rules tunnel/_relay.c's header gives; what Python sees of it is in tunnel/_relay.c. */

#include "relay.h"

double relay_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

void relay_end_link(Relay *self, int slot, const char *why, int err) {
    Link *link = &self->links[slot];
    if (link->ended)
        return;
    link->ended = why;
    link->error = err;
    for (int s = 0; s < 2; s++) {
        if (link->side[s].events >= 0) {
            epoll_ctl(self->epfd, EPOLL_CTL_DEL, link->side[s].fd, NULL);
            link->side[s].events = -1;
        }
    }
    /* Reported when the turn's events are done (no Python runs while a Link pointer is held:
       a collection's __del__ could add a tunnel and move the array).  `cap` entries: a slot
       ends once per turn at most, but for this: a turn's Python may free an ended slot and a
       new tunnel end in it, listed twice then and closed twice, which close() allows. */
    if (self->pumping && self->nended < self->cap)
        self->ended_slots[self->nended++] = slot;
}

/* The interest of both sides from the state: EPOLLIN while a side's direction is open and the
   other side holds nothing back for... the other side; EPOLLOUT while it holds bytes for it. */
void relay_update_interest(Relay *self, int slot) {
    Link *link = &self->links[slot];
    if (link->ended)
        return;
    for (int s = 0; s < 2; s++) {
        Side *side = &link->side[s], *other = &link->side[1 - s];
        int want = (!side->eof && other->out == NULL ? EPOLLIN : 0) | (side->out != NULL ? EPOLLOUT : 0);
        if (want == side->events)
            continue;
        struct epoll_event ev = {.events = (uint32_t)want, .data.u64 = 0};
        ev.data.fd = RELAY_TAG(slot, s);
        int op = side->events < 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (side->events < 0 && want == 0)
            continue;       /* out of epoll (a hang-up seen while paused), and nothing wanted */
        if (epoll_ctl(self->epfd, op, side->fd, &ev) < 0) {
            relay_end_link(self, slot, "epoll_ctl failed", errno);
            return;
        }
        side->events = want;
    }
}

int relay_keep(Side *sink, const char *data, Py_ssize_t len) {
    sink->out = malloc(len);
    if (sink->out == NULL)
        return -1;
    memcpy(sink->out, data, len);
    sink->out_len = len;
    sink->out_off = 0;
    return 0;
}

/* 0, or -1 when no pipe can be had now (out of descriptors): this read is copied, and the next
   full one tries again, as tunnel.tunnel does. */
static int open_pipe(Relay *self) {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    self->pipe_r = fds[0];
    self->pipe_w = fds[1];
    int size = fcntl(fds[1], F_SETPIPE_SZ, PIPE_SIZE);
    self->pipe_size = size > 0 ? size : fcntl(fds[1], F_GETPIPE_SZ);
    return 0;
}

void relay_discard_pipe(Relay *self) {
    if (self->pipe_r >= 0) {
        close(self->pipe_r);
        close(self->pipe_w);
    }
    self->pipe_r = self->pipe_w = -1;
}

/* After a read that filled the buffer (and went out whole): one pipe's worth more through the
   pipe, as tunnel.tunnel moves one per event; what is left waits for the next event (epoll is
   level-triggered), so one fast tunnel holds the loop no longer than a Python one did.  1: copy
   this one instead (no pipe, splice refused, EOF or the urgent mark: recv tells them apart);
   0: done for this event (`out` may hold what the sink did not take); -1: ended. */
static int splice_rest(Relay *self, int slot, int s) {
    Link *link = &self->links[slot];
    Side *source = &link->side[s], *sink = &link->side[1 - s];
    if (!self->splicing || (self->pipe_r < 0 && open_pipe(self) < 0))
        return 1;
    ssize_t n = splice(source->fd, NULL, self->pipe_w, NULL, self->pipe_size, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
        if (errno == EAGAIN) {
            source->bulk = 0;
            return 0;
        }
        if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
            self->splicing = 0;     /* this kernel or sandbox cannot splice sockets */
            return 1;
        }
        relay_end_link(self, slot, "recv failed", errno);
        return -1;
    }
    if (n == 0)
        return 1;
    source->bulk = n == self->pipe_size;
    link->bytes[s] += n;
    ssize_t sent = splice(self->pipe_r, NULL, sink->fd, NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (sent < 0) {
        if (errno != EAGAIN) {
            relay_discard_pipe(self);
            relay_end_link(self, slot, "send failed", errno);
            return -1;
        }
        sent = 0;
    }
    if (sent < n) {     /* the pipe must be left empty: the rest is the sink's leftover */
        Py_ssize_t rest = n - sent, got = 0;
        sink->out = malloc(rest);
        if (sink->out == NULL) {
            relay_discard_pipe(self);
            relay_end_link(self, slot, "out of memory", 0);
            return -1;
        }
        while (got < rest) {
            ssize_t r = read(self->pipe_r, sink->out + got, rest - got);
            if (r <= 0) {
                relay_discard_pipe(self);
                relay_end_link(self, slot, "pipe failed", r < 0 ? errno : 0);
                return -1;
            }
            got += r;
        }
        sink->out_len = rest;
        sink->out_off = 0;
    }
    return 0;
}

static void copy(Relay *self, int slot, int s) {
    Link *link = &self->links[slot];
    Side *source = &link->side[s], *sink = &link->side[1 - s];
    if (source->bulk) {         /* a bulk transfer goes on: all of this event's bytes spliced */
        int spliced = splice_rest(self, slot, s);
        if (spliced <= 0) {
            link->last = self->now;
            if (spliced == 0 && sink->out != NULL)
                relay_update_interest(self, slot);
            return;
        }
    }
    for (int reads = 0; reads < READS_PER_EVENT; reads++) {
        ssize_t n = recv(source->fd, self->buf, BUF_SIZE, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            relay_end_link(self, slot, "recv failed", errno);
            return;
        }
        link->last = self->now;
        if (n == 0) {
            source->eof = 1;
            if (link->side[1 - s].eof) {
                relay_end_link(self, slot, "closed", 0);
                return;
            }
            if (sink->out == NULL)
                shutdown(sink->fd, SHUT_WR);    /* else once it has drained */
            relay_update_interest(self, slot);
            return;
        }
        link->bytes[s] += n;
        source->bulk = n == BUF_SIZE;
        ssize_t sent = send(sink->fd, self->buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            if (errno != EAGAIN) {
                relay_end_link(self, slot, "send failed", errno);
                return;
            }
            sent = 0;
        }
        if (sent < n) {
            if (relay_keep(sink, self->buf + sent, n - sent) < 0) {
                relay_end_link(self, slot, "out of memory", 0);
                return;
            }
            relay_update_interest(self, slot);
            return;
        }
        if (n < BUF_SIZE)
            return;
        int more = splice_rest(self, slot, s);
        if (more <= 0) {
            if (more == 0 && sink->out != NULL)
                relay_update_interest(self, slot);
            return;
        }
    }
}

static void drain(Relay *self, int slot, int s) {
    Link *link = &self->links[slot];
    Side *sink = &link->side[s];
    ssize_t sent = send(sink->fd, sink->out + sink->out_off, sink->out_len - sink->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
        if (errno == EAGAIN)
            return;
        relay_end_link(self, slot, "send failed", errno);
        return;
    }
    link->last = self->now;
    sink->out_off += sent;
    if (sink->out_off < sink->out_len)
        return;
    free(sink->out);
    sink->out = NULL;
    if (link->side[1 - s].eof)
        shutdown(sink->fd, SHUT_WR);
    relay_update_interest(self, slot);
}

void relay_on_event(Relay *self, int slot, int s, uint32_t mask) {
    Link *link = &self->links[slot];
    Side *side = &link->side[s];
    if (link->key == NULL || link->ended)
        return;
    if ((mask & EPOLLOUT) && side->out != NULL)
        drain(self, slot, s);
    if (link->ended || !(mask & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    if (side->events > 0 && (side->events & EPOLLIN))
        copy(self, slot, s);
    else if (mask & EPOLLERR)
        relay_end_link(self, slot, "reset", 0);
    else if ((mask & EPOLLHUP) && side->events >= 0) {
        /* The peer's FIN after our own half-close, while this side is paused: out of epoll
           until the other side drains (update_interest adds it back). */
        epoll_ctl(self->epfd, EPOLL_CTL_DEL, side->fd, NULL);
        side->events = -1;
    }
}
