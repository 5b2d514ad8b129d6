/*
 * One client of a volume, for tests that need several processes on one fake root
 * (crates/gfapi-fake/tests/processes.rs). Prints what happens, one line at a time.
 *
 *   peer hold-mandatory VOL FILE   takes a mandatory write lock on FILE, prints
 *                                  "locked", then waits to be killed
 *   peer write VOL FILE            writes 4 bytes at 0: "write: N" or "write: -1 ERR"
 *   peer wait-upcall VOL FILE      looks FILE up, registers for upcalls, prints
 *                                  "ready", then "upcall REASON size|other" for the
 *                                  first event about FILE (exit 3 after 120 s without)
 *   peer poll-upcall VOL FILE      the same with glfs_h_poll_upcall
 *   peer hold-lease VOL FILE       takes a read-write lease, prints "leased", then
 *                                  "recalled" when another client wants the file
 *   peer return-lease VOL FILE     takes a read-write lease, prints "leased"; when
 *                                  recalled, prints "recalled: " and the file's first 8
 *                                  bytes, returns the lease (GLFS_UNLK_LEASE), prints
 *                                  "returned: 0" (or "returned: -1 ERR") and waits
 *   peer keep-lease VOL FILE       takes a read-write lease, registers for upcalls,
 *                                  prints "leased"; on GLFS_UPCALL_RECALL_LEASE about
 *                                  FILE prints "upcall recall TYPE" and the first 8
 *                                  bytes, and never returns the lease
 *   peer get-lease VOL FILE        prints "lease type: N" (GLFS_GET_LEASE)
 *   peer keep-read-lease VOL FILE  takes a read lease, prints "leased", and waits
 *   peer read VOL FILE             reads 8 bytes at 0: "read: " and the bytes
 */
#define _GNU_SOURCE
#include <glusterfs/api/glfs.h>
#include <glusterfs/api/glfs-handles.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char want[GFAPI_HANDLE_LENGTH];

static void line(const char *s) {
    printf("%s\n", s);
    fflush(stdout);
}

static int about_file(struct glfs_object *o) {
    unsigned char h[GFAPI_HANDLE_LENGTH];
    return o && glfs_h_extract_handle(o, h, sizeof h) == GFAPI_HANDLE_LENGTH &&
           memcmp(h, want, sizeof h) == 0;
}

static void report(struct glfs_upcall *up) {
    int reason = glfs_upcall_get_reason(up);
    void *ev = glfs_upcall_get_event(up);
    if (reason == GLFS_UPCALL_INODE_INVALIDATE &&
        about_file(glfs_upcall_inode_get_object(ev))) {
        uint64_t flags = glfs_upcall_inode_get_flags(ev);
        printf("upcall %d %s\n", reason, (flags & GFAPI_UP_SIZE) ? "size" : "other");
        fflush(stdout);
        glfs_free(up);
        exit(0);
    }
    glfs_free(up);
}

static void on_upcall(struct glfs_upcall *up, void *data) {
    (void)data;
    report(up);
}

static void on_recall(struct glfs_lease lease, void *data) {
    (void)lease;
    (void)data;
    line("recalled");
    exit(0);
}

static glfs_fd_t *lease_fd;
static struct glfs_lease held;

/* The first 8 bytes of the leased file, read through the holder's fd. */
static void print_data(const char *what) {
    char buf[9] = {0};
    glfs_pread(lease_fd, buf, 8, 0, 0, NULL);
    printf("%s: %s\n", what, buf);
    fflush(stdout);
}

static void on_recall_return(struct glfs_lease lease, void *data) {
    (void)lease;
    (void)data;
    print_data("recalled");
    struct glfs_lease u = held;
    u.cmd = GLFS_UNLK_LEASE;
    errno = 0;
    if (glfs_lease(lease_fd, &u, NULL, NULL) == 0)
        line("returned: 0");
    else
        printf("returned: -1 %s\n", strerrorname_np(errno));
    fflush(stdout);
}

static void on_upcall_recall(struct glfs_upcall *up, void *data) {
    (void)data;
    if (glfs_upcall_get_reason(up) == GLFS_UPCALL_RECALL_LEASE) {
        void *ev = glfs_upcall_get_event(up);
        if (about_file(glfs_upcall_lease_get_object(ev))) {
            printf("upcall recall %u\n", glfs_upcall_lease_get_lease_type(ev));
            print_data("data");
        }
    }
    glfs_free(up);
}

/* Opens FILE and takes a lease of `type` on it (a read lease on a read-only fd);
 * recalls go to `cb`. */
static int take_lease_of(glfs_t *fs, const char *file, int type, glfs_recall_cbk cb) {
    lease_fd = glfs_open(fs, file, type == GLFS_RD_LEASE ? O_RDONLY : O_RDWR);
    memset(&held, 0, sizeof held);
    held.cmd = GLFS_SET_LEASE;
    held.lease_type = type;
    memset(held.lease_id, 1, sizeof held.lease_id);
    struct glfs_lease l = held;
    if (!lease_fd || glfs_lease(lease_fd, &l, cb, NULL)) {
        perror("lease");
        return -1;
    }
    return 0;
}

/* Opens FILE and takes a read-write lease on it; recalls go to `cb`. */
static int take_lease(glfs_t *fs, const char *file, glfs_recall_cbk cb) {
    return take_lease_of(fs, file, GLFS_RW_LEASE, cb);
}

int main(int argc, char **argv) {
    if (argc != 4)
        return 2;
    const char *role = argv[1], *file = argv[3];
    glfs_t *fs = glfs_new(argv[2]);
    if (!fs || glfs_set_volfile_server(fs, "tcp", "127.0.0.2", 24007) || glfs_init(fs)) {
        perror("mount");
        return 1;
    }
    if (strcmp(role, "hold-mandatory") == 0) {
        glfs_fd_t *fd = glfs_open(fs, file, O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (!fd || glfs_file_lock(fd, F_SETLK, &fl, GLFS_LK_MANDATORY)) {
            perror("lock");
            return 1;
        }
        line("locked");
        for (;;)
            pause();
    }
    if (strcmp(role, "write") == 0) {
        glfs_fd_t *fd = glfs_open(fs, file, O_RDWR);
        if (!fd) {
            perror("open");
            return 1;
        }
        errno = 0;
        ssize_t r = glfs_pwrite(fd, "peer", 4, 0, 0, NULL, NULL);
        if (r < 0)
            printf("write: -1 %s\n", strerrorname_np(errno));
        else
            printf("write: %zd\n", r);
        glfs_close(fd);
        glfs_fini(fs);
        return 0;
    }
    if (strcmp(role, "truncate") == 0) {
        errno = 0;
        int r = glfs_truncate(fs, file, 3);
        if (r < 0)
            printf("truncate: -1 %s\n", strerrorname_np(errno));
        else
            printf("truncate: %d\n", r);
        glfs_fini(fs);
        return 0;
    }
    if (strcmp(role, "wait-upcall") == 0 || strcmp(role, "poll-upcall") == 0) {
        struct stat st;
        struct glfs_object *o = glfs_h_lookupat(fs, NULL, file, &st, 0);
        if (!o || glfs_h_extract_handle(o, want, sizeof want) != GFAPI_HANDLE_LENGTH) {
            perror("lookup");
            return 1;
        }
        int poll = strcmp(role, "poll-upcall") == 0;
        if (poll) {
            struct glfs_upcall *up = NULL;
            glfs_h_poll_upcall(fs, &up); /* starts listening */
            if (up)
                glfs_free(up);
        } else if (glfs_upcall_register(fs, GLFS_EVENT_INODE_INVALIDATE, on_upcall, NULL) <= 0) {
            perror("register");
            return 1;
        }
        line("ready");
        for (int i = 0; i < 12000; i++) {
            if (poll) {
                struct glfs_upcall *up = NULL;
                if (glfs_h_poll_upcall(fs, &up) == 0 && up)
                    report(up);
            }
            usleep(10000);
        }
        return 3;
    }
    if (strcmp(role, "hold-lease") == 0) {
        glfs_fd_t *fd = glfs_open(fs, file, O_RDWR);
        struct glfs_lease l;
        memset(&l, 0, sizeof l);
        l.cmd = GLFS_SET_LEASE;
        l.lease_type = GLFS_RW_LEASE;
        memset(l.lease_id, 1, sizeof l.lease_id);
        if (!fd || glfs_lease(fd, &l, on_recall, NULL)) {
            perror("lease");
            return 1;
        }
        line("leased");
        sleep(120);
        return 3;
    }
    if (strcmp(role, "return-lease") == 0) {
        if (take_lease(fs, file, on_recall_return))
            return 1;
        line("leased");
        for (;;)
            pause();
    }
    if (strcmp(role, "keep-lease") == 0) {
        struct stat st;
        struct glfs_object *o = glfs_h_lookupat(fs, NULL, file, &st, 0);
        if (!o || glfs_h_extract_handle(o, want, sizeof want) != GFAPI_HANDLE_LENGTH ||
            take_lease(fs, file, NULL) ||
            glfs_upcall_register(fs, GLFS_EVENT_RECALL_LEASE, on_upcall_recall, NULL) <= 0) {
            perror("keep-lease");
            return 1;
        }
        line("leased");
        for (;;)
            pause();
    }
    if (strcmp(role, "keep-read-lease") == 0) {
        if (take_lease_of(fs, file, GLFS_RD_LEASE, NULL))
            return 1;
        line("leased");
        for (;;)
            pause();
    }
    if (strcmp(role, "read") == 0) {
        glfs_fd_t *fd = glfs_open(fs, file, O_RDONLY);
        char buf[8];
        if (!fd) {
            perror("open");
            return 1;
        }
        ssize_t r = glfs_pread(fd, buf, sizeof buf, 0, 0, NULL);
        if (r < 0)
            printf("read: -1 %s\n", strerrorname_np(errno));
        else
            printf("read: %.*s\n", (int)r, buf);
        glfs_close(fd);
        glfs_fini(fs);
        return 0;
    }
    if (strcmp(role, "get-lease") == 0) {
        glfs_fd_t *fd = glfs_open(fs, file, O_RDONLY);
        struct glfs_lease l;
        memset(&l, 0, sizeof l);
        l.cmd = GLFS_GET_LEASE;
        if (!fd || glfs_lease(fd, &l, NULL, NULL)) {
            perror("get-lease");
            return 1;
        }
        printf("lease type: %d\n", l.lease_type);
        return 0;
    }
    return 2;
}
