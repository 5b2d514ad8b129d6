/*
 * Calls every function family of libgfapi through Debian's glfs.h / glfs-handles.h and
 * prints one line per call: "<family> <call>: <result>" where the result is what a
 * consumer can rely on (return value or a property of it, and errno on failure), never
 * inode numbers or times. Built and run by crates/gfapi-fake/tests/c_program.rs on the
 * fake and, unchanged, on the real library against a live volume; the two transcripts
 * are compared line by line.
 *
 * usage: families VOLUME HOST DIR   (DIR: a fresh directory name inside the volume)
 * exit status: 0 when every call ran (results are for the comparison), 2 on bad usage,
 * 1 when the mount failed. DIR and what the families made in it are removed at the end.
 */
#define _GNU_SOURCE
#include <glusterfs/api/glfs.h>
#include <glusterfs/api/glfs-handles.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static const char *dir;

static void out(const char *fam, const char *call, long ret, int err) {
    if (ret < 0)
        printf("%s %s: -1 %s\n", fam, call, strerrorname_np(err) ? strerrorname_np(err) : "?");
    else
        printf("%s %s: %ld\n", fam, call, ret);
    fflush(stdout);
}

#define R(fam, call, expr)                                                         \
    do {                                                                            \
        errno = 0;                                                                  \
        long r_ = (long)(expr);                                                     \
        out(fam, call, r_, errno);                                                  \
    } while (0)

/* a path inside the test directory */
static const char *p(const char *name) {
    static char buf[8][512];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "/%s/%s", dir, name);
    return buf[i];
}

static void say(const char *fam, const char *call, const char *what) {
    printf("%s %s: %s\n", fam, call, what);
    fflush(stdout);
}

static void attributes(glfs_t *fs) {
    const char *F = "attrs";
    struct stat st;
    glfs_fd_t *fd = glfs_creat(fs, p("a"), O_RDWR, 0644);
    say(F, "creat", fd ? "fd" : "NULL");
    R(F, "chmod 0600", glfs_chmod(fs, p("a"), 0600));
    glfs_stat(fs, p("a"), &st);
    printf("%s mode: %o\n", F, st.st_mode & 07777);
    R(F, "fchmod 0640", glfs_fchmod(fd, 0640));
    glfs_fstat(fd, &st);
    printf("%s mode: %o\n", F, st.st_mode & 07777);
    R(F, "chown self", glfs_chown(fs, p("a"), getuid(), getgid()));
    R(F, "fchown self", glfs_fchown(fd, getuid(), getgid()));
    R(F, "chown missing", glfs_chown(fs, p("missing"), getuid(), getgid()));
    struct timespec ts[2] = {{1000000000, 0}, {1200000000, 500}};
    R(F, "utimens", glfs_utimens(fs, p("a"), ts));
    glfs_stat(fs, p("a"), &st);
    printf("%s mtime: %ld\n", F, (long)st.st_mtime);
    ts[1].tv_sec = 1300000000;
    R(F, "futimens", glfs_futimens(fd, ts));
    glfs_fstat(fd, &st);
    printf("%s mtime: %ld\n", F, (long)st.st_mtime);
    struct glfs_stat gs;
    memset(&gs, 0, sizeof gs);
    gs.glfs_st_mask = GLFS_STAT_MODE | GLFS_STAT_MTIME;
    gs.glfs_st_mode = 0604;
    gs.glfs_st_mtime.tv_sec = 1400000000;
    R(F, "setattr mode+mtime", glfs_setattr(fs, p("a"), &gs, 1));
    glfs_stat(fs, p("a"), &st);
    printf("%s mode mtime: %o %ld\n", F, st.st_mode & 07777, (long)st.st_mtime);
    gs.glfs_st_mode = 0644;
    gs.glfs_st_mask = GLFS_STAT_MODE;
    R(F, "fsetattr mode", glfs_fsetattr(fd, &gs));
    glfs_fstat(fd, &st);
    printf("%s mode: %o\n", F, st.st_mode & 07777);
    R(F, "link", glfs_link(fs, p("a"), p("a-link")));
    glfs_stat(fs, p("a"), &st);
    printf("%s nlink: %ld\n", F, (long)st.st_nlink);
    R(F, "link onto existing", glfs_link(fs, p("a"), p("a-link")));
    R(F, "symlink", glfs_symlink(fs, "a", p("a-sym")));
    char buf[256];
    memset(buf, 0, sizeof buf);
    R(F, "readlink", glfs_readlink(fs, p("a-sym"), buf, sizeof buf));
    printf("%s readlink text: %s\n", F, buf);
    R(F, "readlink regular", glfs_readlink(fs, p("a"), buf, sizeof buf));
    R(F, "lutimens", glfs_lutimens(fs, p("a-sym"), ts));
    R(F, "lchown", glfs_lchown(fs, p("a-sym"), getuid(), getgid()));
    char *rp = glfs_realpath(fs, p("a-sym"), NULL);
    if (rp) {
        const char *tail = strrchr(rp, '/');
        printf("%s realpath tail: %s\n", F, tail ? tail : rp);
        glfs_free(rp);
    } else
        out(F, "realpath", -1, errno);
    R(F, "mknod fifo", glfs_mknod(fs, p("fifo"), S_IFIFO | 0644, 0));
    glfs_lstat(fs, p("fifo"), &st);
    printf("%s fifo: %d\n", F, S_ISFIFO(st.st_mode));
    R(F, "pwrite", glfs_pwrite(fd, "0123456789", 10, 0, 0, NULL, NULL));
    R(F, "lseek 4", glfs_lseek(fd, 4, SEEK_SET));
    glfs_fd_t *dup = glfs_dup(fd);
    say(F, "dup", dup ? "fd" : "NULL");
    memset(buf, 0, sizeof buf);
    R(F, "read on dup", glfs_read(dup, buf, 3, 0));
    printf("%s dup data: %s\n", F, buf);
    R(F, "close dup", glfs_close(dup));
    R(F, "chdir", glfs_chdir(fs, p("")));
    char cwd[512];
    char *c = glfs_getcwd(fs, cwd, sizeof cwd);
    char want[512];
    snprintf(want, sizeof want, "/%s", dir);
    printf("%s getcwd: %s\n", F, c ? (strcmp(c, want) == 0 ? "the directory" : c) : "NULL");
    R(F, "stat relative", glfs_stat(fs, "a", &st));
    R(F, "getcwd small", glfs_getcwd(fs, cwd, 2) ? 0 : -1);
    R(F, "chdir file", glfs_chdir(fs, p("a")));
    glfs_fd_t *dfd = glfs_opendir(fs, "/");
    R(F, "fchdir", glfs_fchdir(dfd));
    c = glfs_getcwd(fs, cwd, sizeof cwd);
    printf("%s getcwd: %s\n", F, c ? c : "NULL");
    glfs_closedir(dfd);
    glfs_close(fd);
}

static void xattrs(glfs_t *fs) {
    const char *F = "xattr";
    char buf[256];
    glfs_fd_t *fd = glfs_creat(fs, p("x"), O_RDWR, 0644);
    R(F, "setxattr", glfs_setxattr(fs, p("x"), "user.k", "v1", 2, 0));
    R(F, "setxattr create existing", glfs_setxattr(fs, p("x"), "user.k", "v1", 2, XATTR_CREATE));
    R(F, "setxattr replace missing", glfs_setxattr(fs, p("x"), "user.none", "v", 1, XATTR_REPLACE));
    R(F, "getxattr size", glfs_getxattr(fs, p("x"), "user.k", NULL, 0));
    memset(buf, 0, sizeof buf);
    R(F, "getxattr", glfs_getxattr(fs, p("x"), "user.k", buf, sizeof buf));
    printf("%s value: %s\n", F, buf);
    R(F, "getxattr small", glfs_getxattr(fs, p("x"), "user.k", buf, 1));
    R(F, "getxattr missing", glfs_getxattr(fs, p("x"), "user.none", buf, sizeof buf));
    R(F, "fsetxattr", glfs_fsetxattr(fd, "user.f", "fv", 2, 0));
    memset(buf, 0, sizeof buf);
    R(F, "fgetxattr", glfs_fgetxattr(fd, "user.f", buf, sizeof buf));
    printf("%s value: %s\n", F, buf);
    memset(buf, 0, sizeof buf);
    long n = glfs_listxattr(fs, p("x"), buf, sizeof buf);
    int have_k = 0, have_f = 0;
    for (long i = 0; i < n; i += strlen(buf + i) + 1) {
        have_k |= strcmp(buf + i, "user.k") == 0;
        have_f |= strcmp(buf + i, "user.f") == 0;
    }
    printf("%s listxattr has user.k user.f: %d %d\n", F, have_k, have_f);
    n = glfs_flistxattr(fd, buf, sizeof buf);
    printf("%s flistxattr positive: %d\n", F, n > 0);
    n = glfs_llistxattr(fs, p("x"), buf, sizeof buf);
    printf("%s llistxattr positive: %d\n", F, n > 0);
    R(F, "lgetxattr size", glfs_lgetxattr(fs, p("x"), "user.k", NULL, 0));
    R(F, "lsetxattr", glfs_lsetxattr(fs, p("x"), "user.l", "l", 1, 0));
    R(F, "lremovexattr", glfs_lremovexattr(fs, p("x"), "user.l"));
    R(F, "removexattr", glfs_removexattr(fs, p("x"), "user.k"));
    R(F, "removexattr again", glfs_removexattr(fs, p("x"), "user.k"));
    R(F, "fremovexattr", glfs_fremovexattr(fd, "user.f"));
    R(F, "gfid.string", glfs_getxattr(fs, p("x"), "glusterfs.gfid.string", buf, sizeof buf));
    memset(buf, 0, sizeof buf);
    long pl = glfs_getxattr(fs, p("x"), "trusted.glusterfs.pathinfo", buf, sizeof buf);
    /* one brick: <POSIX(brick):host:file>; replica N: (<REPLICATE:vol-replicate-0> N of those) */
    int bricks = 0;
    for (char *b = buf; pl > 0 && (b = strstr(b, "<POSIX(")); b++)
        bricks++;
    printf("%s pathinfo form: %s %d\n", F,
           pl <= 0                                  ? "none"
           : strncmp(buf, "(<REPLICATE:", 12) == 0 ? "replicate"
           : strncmp(buf, "<POSIX(", 7) == 0       ? "posix"
                                                    : "other",
           bricks);
    R(F, "node-uuid", glfs_getxattr(fs, p("x"), "trusted.glusterfs.node-uuid", buf, sizeof buf));
    R(F, "fgetxattr pathinfo", glfs_fgetxattr(fd, "glusterfs.pathinfo", buf, sizeof buf));
    R(F, "fgetxattr trusted.gfid", glfs_fgetxattr(fd, "trusted.gfid", buf, sizeof buf));
    R(F, "setxattr pathinfo", glfs_setxattr(fs, p("x"), "glusterfs.pathinfo", "x", 1, 0));
    glfs_close(fd);
}

static void directories(glfs_t *fs) {
    const char *F = "dir";
    glfs_mkdir(fs, p("d"), 0755);
    glfs_fd_t *f = glfs_creat(fs, p("d/one"), O_RDWR, 0644);
    glfs_pwrite(f, "abc", 3, 0, 0, NULL, NULL);
    glfs_close(f);
    glfs_fd_t *d = glfs_opendir(fs, p("d"));
    struct stat st;
    struct dirent ent, *res;
    int files = 0, sizes = 0, n = 0;
    while (glfs_readdirplus_r(d, &st, &ent, &res) == 0 && res) {
        n++;
        if (strcmp(ent.d_name, "one") == 0) {
            files++;
            sizes += st.st_size == 3;
        }
    }
    printf("%s readdirplus_r entries one size3: %d %d %d\n", F, n, files, sizes);
    glfs_closedir(d);
    d = glfs_opendir(fs, p("d"));
    n = 0;
    struct dirent *e;
    while ((e = glfs_readdirplus(d, &st)))
        if (strcmp(e->d_name, "one") == 0)
            n += st.st_size == 3 && S_ISREG(st.st_mode);
    printf("%s readdirplus one regular size3: %d\n", F, n);
    glfs_closedir(d);
    d = glfs_opendir(fs, p("d"));
    struct glfs_xreaddirp_stat *xs;
    int flags_ok = 0, objs = 0;
    for (;;) {
        int r = glfs_xreaddirplus_r(d, GFAPI_XREADDIRP_STAT | GFAPI_XREADDIRP_HANDLE, &xs, &ent, &res);
        if (r <= 0 || !res)
            break;
        flags_ok += r == (GFAPI_XREADDIRP_STAT | GFAPI_XREADDIRP_HANDLE);
        struct stat *xst = glfs_xreaddirplus_get_stat(xs);
        struct glfs_object *o = glfs_xreaddirplus_get_object(xs);
        if (strcmp(ent.d_name, "one") == 0 && xst && xst->st_size == 3 && o) {
            struct stat hs;
            objs += glfs_h_stat(fs, o, &hs) == 0 && hs.st_size == 3;
        }
        glfs_free(xs);
    }
    printf("%s xreaddirplus flags-entries one-with-object: %d %d\n", F, flags_ok, objs);
    glfs_closedir(d);
}

static void instance(glfs_t *fs) {
    const char *F = "instance";
    char buf[1];
    long r = glfs_get_volfile(fs, buf, 0);
    printf("%s get_volfile into 0 bytes negative: %d\n", F, r < 0);
    long need = -r;
    char *vf = malloc(need + 1);
    r = glfs_get_volfile(fs, vf, need);
    printf("%s get_volfile fills: %d\n", F, r == need);
    vf[need > 0 ? need : 0] = 0;
    printf("%s volfile has protocol/client: %d\n", F, strstr(vf, "protocol/client") != NULL);
    free(vf);
    R(F, "set_statedump_path", glfs_set_statedump_path(fs, "/tmp"));
    R(F, "sysrq h", glfs_sysrq(fs, 'h'));
    R(F, "setfsuid", glfs_setfsuid(getuid()));
    R(F, "setfsgid", glfs_setfsgid(getgid()));
    R(F, "setfsgroups", glfs_setfsgroups(0, NULL));
    glfs_leaseid_t id;
    memset(id, 7, sizeof id);
    R(F, "setfsleaseid", glfs_setfsleaseid(id));
    char volid[16];
    R(F, "get_volumeid", glfs_get_volumeid(fs, volid, sizeof volid));
}

static void copies(glfs_t *fs) {
    const char *F = "copy";
    char buf[16] = {0};
    glfs_fd_t *src = glfs_creat(fs, p("c-src"), O_RDWR, 0644);
    glfs_fd_t *dst = glfs_creat(fs, p("c-dst"), O_RDWR, 0644);
    say(F, "creat", src && dst ? "fds" : "NULL");
    R(F, "pwrite source", glfs_pwrite(src, "0123456789", 10, 0, 0, NULL, NULL));
    /* on the brick before the copy (Gluster's write-behind would otherwise hold it) */
    R(F, "fsync source", glfs_fsync(src, NULL, NULL));
    off64_t oi = 2, oo = 4;
    struct glfs_stat sst, pre, post;
    memset(&sst, 0, sizeof sst);
    memset(&pre, 0, sizeof pre);
    memset(&post, 0, sizeof post);
    R(F, "copy 5 at 2 to 4", glfs_copy_file_range(src, &oi, dst, &oo, 5, 0, &sst, &pre, &post));
    printf("%s offsets after: %ld %ld\n", F, (long)oi, (long)oo);
    printf("%s source size in statbuf: %ld\n", F, (long)sst.glfs_st_size);
    printf("%s destination size pre post: %ld %ld\n", F, (long)pre.glfs_st_size,
           (long)post.glfs_st_size);
    R(F, "pread destination", glfs_pread(dst, buf, sizeof buf, 0, 0, NULL));
    printf("%s destination data: %d %.5s\n", F, buf[0] == 0 && buf[3] == 0, buf + 4);
    oi = 8;
    oo = 0;
    R(F, "copy past end of source", glfs_copy_file_range(src, &oi, dst, &oo, 100, 0, NULL, NULL, NULL));
    oi = 20;
    R(F, "copy at end of source", glfs_copy_file_range(src, &oi, dst, &oo, 4, 0, NULL, NULL, NULL));
    R(F, "lseek source", glfs_lseek(src, 1, SEEK_SET));
    R(F, "lseek destination", glfs_lseek(dst, 12, SEEK_SET));
    R(F, "copy at fd offsets", glfs_copy_file_range(src, NULL, dst, NULL, 3, 0, NULL, NULL, NULL));
    R(F, "source offset after", glfs_lseek(src, 0, SEEK_CUR));
    R(F, "destination offset after", glfs_lseek(dst, 0, SEEK_CUR));
    memset(buf, 0, sizeof buf);
    R(F, "pread destination", glfs_pread(dst, buf, sizeof buf, 0, 0, NULL));
    printf("%s destination data: %.2s %.3s\n", F, buf, buf + 12);
    oi = 0;
    oo = 0;
    R(F, "copy with flags 1", glfs_copy_file_range(src, &oi, dst, &oo, 1, 1, NULL, NULL, NULL));
    glfs_close(dst);
    glfs_close(src);
}

static void locks(glfs_t *fs) {
    const char *F = "locks";
    glfs_fd_t *a = glfs_creat(fs, p("l"), O_RDWR, 0644);
    glfs_fd_t *b = glfs_open(fs, p("l"), O_RDWR);
    R(F, "set_lkowner a", glfs_fd_set_lkowner(a, "owner-a", 7));
    R(F, "set_lkowner b", glfs_fd_set_lkowner(b, "owner-b", 7));
    R(F, "set_lkowner too long", glfs_fd_set_lkowner(a, "x", 256));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
    R(F, "posix_lock a write", glfs_posix_lock(a, F_SETLK, &fl));
    /* another fd of owner a: the owner's locks are its own (Gluster's locks xlator) */
    glfs_fd_t *c = glfs_open(fs, p("l"), O_RDWR);
    R(F, "set_lkowner c as a", glfs_fd_set_lkowner(c, "owner-a", 7));
    struct flock fc = fl;
    R(F, "posix_lock c (owner a) write", glfs_posix_lock(c, F_SETLK, &fc));
    struct flock fb = fl;
    R(F, "posix_lock b write", glfs_posix_lock(b, F_SETLK, &fb));
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 50, .l_len = 10};
    R(F, "getlk b", glfs_posix_lock(b, F_GETLK, &q));
    printf("%s getlk type start len: %d %ld %ld\n", F, q.l_type, (long)q.l_start, (long)q.l_len);
    struct flock other = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 10};
    R(F, "posix_lock b other range", glfs_posix_lock(b, F_SETLK, &other));
    fl.l_type = F_UNLCK;
    R(F, "unlock a", glfs_posix_lock(a, F_SETLK, &fl));
    fb.l_type = F_RDLCK;
    R(F, "posix_lock b read", glfs_posix_lock(b, F_SETLK, &fb));
    struct flock m = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 200, .l_len = 10};
    R(F, "file_lock advisory", glfs_file_lock(a, F_SETLK, &m, GLFS_LK_ADVISORY));
    m.l_type = F_UNLCK;
    R(F, "file_lock advisory unlock", glfs_file_lock(a, F_SETLK, &m, GLFS_LK_ADVISORY));
    glfs_close(c);
    glfs_close(a);
    glfs_close(b);
}

static void handles(glfs_t *fs) {
    const char *F = "handle";
    struct stat st;
    struct glfs_object *d = glfs_h_lookupat(fs, NULL, p(""), &st, 0);
    say(F, "lookupat dir", d ? "object" : "NULL");
    printf("%s dir is dir: %d\n", F, d && S_ISDIR(st.st_mode));
    struct glfs_object *o = glfs_h_creat(fs, d, "h", O_RDWR, 0644, &st);
    say(F, "creat", o ? "object" : "NULL");
    errno = 0;
    struct glfs_object *again = glfs_h_creat(fs, d, "h", O_RDWR | O_EXCL, 0644, &st);
    out(F, "creat excl existing", again ? 0 : -1, errno);
    R(F, "anonymous_write", glfs_h_anonymous_write(fs, o, "handle-data", 11, 0));
    char buf[64];
    memset(buf, 0, sizeof buf);
    R(F, "anonymous_read", glfs_h_anonymous_read(fs, o, buf, 6, 0));
    printf("%s data: %s\n", F, buf);
    R(F, "stat", glfs_h_stat(fs, o, &st));
    printf("%s size: %ld\n", F, (long)st.st_size);
    R(F, "getattrs", glfs_h_getattrs(fs, o, &st));
    st.st_mode = 0600;
    R(F, "setattrs mode", glfs_h_setattrs(fs, o, &st, GFAPI_SET_ATTR_MODE));
    glfs_h_stat(fs, o, &st);
    printf("%s mode: %o\n", F, st.st_mode & 07777);
    R(F, "setxattrs", glfs_h_setxattrs(fs, o, "user.h", "hv", 2, 0));
    memset(buf, 0, sizeof buf);
    R(F, "getxattrs", glfs_h_getxattrs(fs, o, "user.h", buf, sizeof buf));
    printf("%s xattr: %s\n", F, buf);
    R(F, "removexattrs", glfs_h_removexattrs(fs, o, "user.h"));
    R(F, "truncate", glfs_h_truncate(fs, o, 4));
    R(F, "access", glfs_h_access(fs, o, R_OK | W_OK));
    struct statvfs sv;
    R(F, "statfs", glfs_h_statfs(fs, o, &sv));
    unsigned char h[GFAPI_HANDLE_LENGTH];
    R(F, "extract_handle", glfs_h_extract_handle(o, h, sizeof h));
    struct glfs_object *o2 = glfs_h_create_from_handle(fs, h, sizeof h, &st);
    say(F, "create_from_handle", o2 ? "object" : "NULL");
    printf("%s from handle size: %ld\n", F, (long)st.st_size);
    glfs_fd_t *fd = glfs_h_open(fs, o2, O_RDONLY);
    say(F, "open", fd ? "fd" : "NULL");
    memset(buf, 0, sizeof buf);
    R(F, "read", glfs_read(fd, buf, 4, 0));
    printf("%s data: %s\n", F, buf);
    glfs_close(fd);
    struct glfs_object *cp = glfs_object_copy(o2);
    say(F, "object_copy", cp ? "object" : "NULL");
    R(F, "link", glfs_h_link(fs, o, d, "h-link"));
    struct glfs_object *sub = glfs_h_mkdir(fs, d, "hd", 0755, &st);
    say(F, "mkdir", sub ? "object" : "NULL");
    R(F, "rename", glfs_h_rename(fs, d, "h", sub, "h-moved"));
    R(F, "stat after rename", glfs_h_stat(fs, o, &st));
    struct glfs_object *sl = glfs_h_symlink(fs, d, "h-sym", "hd/h-moved", &st);
    say(F, "symlink", sl ? "object" : "NULL");
    memset(buf, 0, sizeof buf);
    R(F, "readlink", glfs_h_readlink(fs, sl, buf, sizeof buf));
    printf("%s link text: %s\n", F, buf);
    glfs_fd_t *dd = glfs_h_opendir(fs, sub);
    int n = 0;
    struct dirent *e;
    while ((e = glfs_readdir(dd)))
        n += strcmp(e->d_name, "h-moved") == 0;
    printf("%s opendir sees h-moved: %d\n", F, n);
    glfs_closedir(dd);
    R(F, "unlink", glfs_h_unlink(fs, sub, "h-moved"));
    R(F, "unlink link", glfs_h_unlink(fs, d, "h-link"));
    R(F, "stat unlinked", glfs_h_stat(fs, o, &st));
    errno = 0;
    struct glfs_object *gone = glfs_h_create_from_handle(fs, h, sizeof h, &st);
    out(F, "create_from_handle unlinked", gone ? 0 : -1, errno);
    R(F, "unlink dir", glfs_h_unlink(fs, d, "hd"));
    errno = 0;
    struct glfs_object *miss = glfs_h_lookupat(fs, d, "missing", &st, 0);
    out(F, "lookupat missing", miss ? 0 : -1, errno);
    glfs_h_close(sl);
    glfs_h_close(cp);
    glfs_h_close(o2);
    glfs_h_close(sub);
    glfs_h_close(o);
    R(F, "close", glfs_h_close(d));
}

static void upcall_cb(struct glfs_upcall *up, void *data) {
    (void)data;
    glfs_free(up);
}

static void upcalls(glfs_t *fs) {
    const char *F = "upcall";
    struct glfs_upcall *up = (void *)1;
    R(F, "poll", glfs_h_poll_upcall(fs, &up));
    printf("%s poll nothing pending: %d\n", F, up == NULL);
    int r = glfs_upcall_register(fs, GLFS_EVENT_ANY, upcall_cb, NULL);
    printf("%s register inode-invalidate: %d\n", F, r > 0 && (r & GLFS_EVENT_INODE_INVALIDATE) != 0);
    r = glfs_upcall_unregister(fs, GLFS_EVENT_ANY);
    printf("%s unregister inode-invalidate: %d\n", F, r > 0 && (r & GLFS_EVENT_INODE_INVALIDATE) != 0);
}

/* Removes `path` and everything under it, printing nothing: the run leaves no files on a
 * live volume, and the transcript stays what the families printed. */
static void remove_tree(glfs_t *fs, const char *path) {
    struct stat st;
    if (glfs_lstat(fs, path, &st))
        return;
    if (!S_ISDIR(st.st_mode)) {
        glfs_unlink(fs, path);
        return;
    }
    glfs_fd_t *d = glfs_opendir(fs, path);
    if (d) {
        struct dirent *e;
        while ((e = glfs_readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(fs, child);
        }
        glfs_closedir(d);
    }
    glfs_rmdir(fs, path);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s VOLUME HOST DIR\n", argv[0]);
        return 2;
    }
    dir = argv[3];
    glfs_t *fs = glfs_new(argv[1]);
    if (!fs || glfs_set_volfile_server(fs, "tcp", argv[2], 24007) || glfs_init(fs)) {
        fprintf(stderr, "mount %s@%s failed: %s\n", argv[1], argv[2], strerror(errno));
        return 1;
    }
    if (glfs_mkdir(fs, p(""), 0755)) {
        fprintf(stderr, "mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    attributes(fs);
    glfs_chdir(fs, "/");
    xattrs(fs);
    directories(fs);
    instance(fs);
    copies(fs);
    locks(fs);
    handles(fs);
    upcalls(fs);
    glfs_chdir(fs, "/");
    char top[512];
    snprintf(top, sizeof top, "/%s", dir);
    remove_tree(fs, top);
    glfs_fini(fs);
    return 0;
}
