/* A small probe for sandpool's security tests: performs one action with raw system calls and
 * prints "ok" or "err <errno>" (or a number for counting actions). Built statically so that
 * its own startup makes as few system calls as possible. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <pthread.h>

static void *thread_main(void *arg) { return arg; }
static int report(long r) {
    if (r < 0) { printf("err %d\n", errno); return 1; }
    printf("ok\n");
    return 0;
}

/* A TCP socket listening on a free loopback port, whose address goes to *sa; -1 on failure. */
static int loopback_listener(struct sockaddr_in *sa, int backlog) {
    socklen_t len = sizeof *sa;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)sa, sizeof *sa) < 0 || listen(l, backlog) < 0) return -1;
    if (getsockname(l, (struct sockaddr *)sa, &len) < 0) return -1;
    return l;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: probe ACTION [ARG]\n"); return 2; }
    const char *a = argv[1];
    const char *arg = argc > 2 ? argv[2] : "";
    if (!strcmp(a, "read")) {
        int fd = open(arg, O_RDONLY);
        if (fd < 0) return report(-1);
        char buf[64];
        return report(read(fd, buf, sizeof buf));
    }
    if (!strcmp(a, "write")) {
        int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) return report(-1);
        return report(write(fd, "probe\n", 6));
    }
    if (!strcmp(a, "ptrace")) return report(ptrace(PTRACE_TRACEME, 0, 0, 0));
    if (!strcmp(a, "unshare")) return report(unshare(CLONE_NEWUSER));
    if (!strcmp(a, "mount")) {
        /* Outside a sandbox, a fresh user+mount namespace makes this allowed for anyone. */
        unshare(CLONE_NEWUSER | CLONE_NEWNS);
        return report(mount("none", "/tmp", "tmpfs", 0, NULL));
    }
    if (!strcmp(a, "chroot")) {
        unshare(CLONE_NEWUSER);
        return report(chroot("/"));
    }
    /* Invalid arguments: a kernel that sees the call answers EINVAL/EFAULT/EOPNOTSUPP, a
     * seccomp filter that refuses it answers EPERM first. */
    if (!strcmp(a, "bpf")) return report(syscall(SYS_bpf, 0xffff, NULL, 0));
    if (!strcmp(a, "keyctl")) return report(syscall(SYS_keyctl, 0xffff, 0, 0, 0, 0));
    if (!strcmp(a, "perf")) return report(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    if (!strcmp(a, "io_uring")) return report(syscall(SYS_io_uring_setup, 1, NULL));
    if (!strcmp(a, "setns")) return report(syscall(SYS_setns, -1, 0));
    /* clone3 with a zero size: EINVAL from the kernel, ENOSYS from the filter. */
    if (!strcmp(a, "clone3")) return report(syscall(SYS_clone3, NULL, 0));
    /* A process, by libc's fork; a thread, by libc's pthread_create (clone3, then clone where
     * clone3 answers ENOSYS). */
    if (!strcmp(a, "fork")) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p > 0) waitpid(p, NULL, 0);
        return report(p);
    }
    if (!strcmp(a, "thread")) {
        pthread_t t;
        int e = pthread_create(&t, NULL, thread_main, NULL);
        if (e) { errno = e; return report(-1); }
        return report(pthread_join(t, NULL) ? -1 : 0);
    }
    /* clone3 asking for a user namespace, which an unprivileged process may make: the child
     * exits at once. */
    if (!strcmp(a, "clone3-newuser")) {
        struct { unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; } ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_NEWUSER;
        ca.exit_signal = SIGCHLD;
        long r = syscall(SYS_clone3, &ca, sizeof ca);
        if (r == 0) _exit(0);
        if (r > 0) waitpid((pid_t)r, NULL, 0);
        return report(r);
    }
#ifdef __x86_64__
    /* getpid through the x32 ABI number: works on the host where x32 is enabled (else ENOSYS),
     * EPERM from the filter. */
    if (!strcmp(a, "x32")) return report(syscall(0x40000000 | SYS_getpid));
#endif
    if (!strcmp(a, "kill")) return report(kill(atoi(arg), 0));
    if (!strcmp(a, "connect")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) return report(-1);
        struct sockaddr_in sa = {0};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(atoi(arg));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return report(connect(s, (struct sockaddr *)&sa, sizeof sa));
    }
    if (!strcmp(a, "forkmany")) {
        /* Fork up to N sleeping children; print how many forks succeeded. */
        int n = atoi(arg), made = 0;
        pid_t kids[4096];
        if (n > 4096) n = 4096;
        for (int i = 0; i < n; i++) {
            pid_t p = fork();
            if (p == 0) { pause(); _exit(0); }
            if (p < 0) break;
            kids[made++] = p;
        }
        printf("%d\n", made);
        for (int i = 0; i < made; i++) { kill(kids[i], SIGKILL); waitpid(kids[i], NULL, 0); }
        return 0;
    }
    if (!strcmp(a, "alloc")) {
        /* Allocate and touch N MiB. */
        size_t n = (size_t)atol(arg) << 20;
        char *p = malloc(n);
        if (!p) return report(-1);
        for (size_t i = 0; i < n; i += 4096) p[i] = 1;
        printf("ok\n");
        return 0;
    }
    if (!strcmp(a, "setxattr")) return report(setxattr(arg, "user.probe", "x", 1, 0));
    if (!strcmp(a, "xattrs")) {
        /* The length of the extended attribute names of ARG (0: none). */
        long n = listxattr(arg, NULL, 0);
        if (n < 0) return report(-1);
        printf("%ld\n", n);
        return 0;
    }
    /* Inode flags (chattr): set FS_NODUMP_FL on ARG, or print ARG's flags. */
    if (!strcmp(a, "setflags") || !strcmp(a, "getflags")) {
        int fd = open(arg, O_RDONLY | O_NONBLOCK);
        if (fd < 0) return report(-1);
        int flags = 0;
        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) return report(-1);
        if (!strcmp(a, "getflags")) { printf("%d\n", flags); return 0; }
        flags |= FS_NODUMP_FL;
        return report(ioctl(fd, FS_IOC_SETFLAGS, &flags));
    }
    /* A loopback TCP connection whose client closes first: its socket stays in TIME_WAIT. */
    if (!strcmp(a, "timewait")) {
        struct sockaddr_in sa;
        int l = loopback_listener(&sa, 1);
        if (l < 0) return report(-1);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa) < 0) return report(-1);
        int s = accept(l, NULL, NULL);
        if (s < 0) return report(-1);
        close(c);
        char b;
        read(s, &b, 1); /* the client's FIN */
        close(s);
        close(l);
        return report(0);
    }
    /* Loopback TCP connections, each written to without blocking until the kernel takes no
     * more and never read, until ARG MiB are buffered (or 128 connections): prints how many
     * bytes the kernel then holds, and holds them until stdin ends. */
    if (!strcmp(a, "sockfill")) {
        long long target = atoll(arg) << 20, buffered = 0;
        static char chunk[1 << 16];
        struct sockaddr_in sa;
        int l = loopback_listener(&sa, 16);
        if (l < 0) return report(-1);
        for (int i = 0; i < 128 && buffered < target; i++) {
            int c = socket(AF_INET, SOCK_STREAM, 0);
            if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa) < 0) return report(-1);
            if (accept(l, NULL, NULL) < 0) return report(-1);
            for (;;) {
                ssize_t w = send(c, chunk, sizeof chunk, MSG_DONTWAIT);
                if (w <= 0) break;
                buffered += w;
            }
        }
        printf("%lld\n", buffered);
        fflush(stdout);
        char b;
        while (read(0, &b, 1) > 0) {}
        return 0;
    }
    /* One UDP datagram to ARG (an IPv4 address) port 9, which nobody listens on. */
    if (!strcmp(a, "udp")) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in sa = {0};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(9);
        if (s < 0 || inet_pton(AF_INET, arg, &sa.sin_addr) != 1) return report(-1);
        return report(sendto(s, "x", 1, 0, (struct sockaddr *)&sa, sizeof sa));
    }
    if (!strcmp(a, "personality")) return report(personality(ADDR_NO_RANDOMIZE));
    if (!strcmp(a, "mbind")) return report(syscall(SYS_mbind, NULL, 0, 0, NULL, 0, 0xffff));
    /* FAN_CLASS_NOTIF | FAN_REPORT_FID: what an unprivileged user may ask for (Linux 5.13+). */
    if (!strcmp(a, "fanotify")) return report(syscall(SYS_fanotify_init, 0x200, O_RDONLY));
    if (!strcmp(a, "procs")) {
        /* Count the processes in /proc, this probe included. */
        DIR *d = opendir("/proc");
        if (!d) return report(-1);
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d))) if (e->d_name[0] >= '1' && e->d_name[0] <= '9') n++;
        printf("%d\n", n);
        return 0;
    }
    /* Runs argv[2..] under the namespace rules of Docker's default seccomp profile (for a
     * process without CAP_SYS_ADMIN): clone3 fails with ENOSYS (so that libcs fall back to
     * clone), clone with a namespace flag, unshare and setns with EPERM. */
    if (!strcmp(a, "docker-seccomp") || !strcmp(a, "docker-sys-admin")) {
        /* Docker's profile with CAP_SYS_ADMIN: clone3 still answers ENOSYS, the rest is allowed. */
        int sys_admin = !strcmp(a, "docker-sys-admin");
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setns, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
            BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x7E020000, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
        if (sys_admin) f[3] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        if (argc < 3) { fprintf(stderr, "usage: probe %s CMD...\n", a); return 2; }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
            return report(-1);
        execvp(argv[2], argv + 2);
        return report(-1);
    }
    /* Opens pseudo-terminals until one fails or ARG are open; prints how many opened. */
    if (!strcmp(a, "ptys")) {
        int want = atoi(arg), n = 0;
        while (n < want && open("/dev/ptmx", O_RDWR | O_NOCTTY) >= 0) n++;
        printf("%d\n", n);
        return 0;
    }
    if (!strcmp(a, "tiocsti")) { char c = '#'; return report(ioctl(0, TIOCSTI, &c)); }
    if (!strcmp(a, "pid")) { printf("%d\n", getpid()); return 0; }
    /* An unnamed file in ARG (O_TMPFILE). */
    if (!strcmp(a, "tmpfile")) return report(open(arg, O_TMPFILE | O_RDWR, 0600));
    /* openat2 of "/" (struct open_how: flags, mode, resolve). */
    if (!strcmp(a, "openat2")) {
        unsigned long long how[3] = {O_RDONLY, 0, 0};
        return report(syscall(SYS_openat2, AT_FDCWD, "/", how, sizeof how));
    }
    /* Makes a System V shared memory segment, prints its id, and removes it. */
    if (!strcmp(a, "shmid")) {
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        if (id < 0) return report(-1);
        printf("%d\n", id);
        shmctl(id, IPC_RMID, NULL);
        return 0;
    }
    /* Makes ARG files in /tmp and removes them; prints the inode number of the first. */
    if (!strcmp(a, "inodes")) {
        int n = atoi(arg);
        unsigned long first = 0;
        char path[64];
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "/tmp/probe-inode-%d", i);
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
            struct stat st;
            if (fd < 0 || fstat(fd, &st) < 0) return report(-1);
            if (i == 0) first = st.st_ino;
            close(fd);
        }
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "/tmp/probe-inode-%d", i);
            unlink(path);
        }
        printf("%lu\n", first);
        return 0;
    }
    /* Every call that acts on another process by pid, aimed at ARG (a pid, or "child": a
     * child of the probe's own, the positive control). Each sets what it first reads, so it
     * changes nothing where it is allowed. Prints "name:ok" or "name:errN" for each. */
    if (!strcmp(a, "pidcalls")) {
        pid_t p = atoi(arg), child = 0;
        if (!strcmp(arg, "child")) {
            child = fork();
            if (child == 0) { pause(); _exit(0); }
            p = child;
        }
#define CALL(name, expr) do { errno = 0; long r_ = (expr); \
        if (r_ < 0) printf("%s:err%d ", name, errno); else printf("%s:ok ", name); } while (0)
        CALL("kill", kill(p, 0));
        CALL("tgkill", syscall(SYS_tgkill, p, p, 0));
        union sigval v = {0};
        CALL("sigqueue", sigqueue(p, 0, v));
        CALL("pidfd_open", syscall(SYS_pidfd_open, p, 0));
        struct rlimit lim;
        CALL("prlimit", prlimit(p, RLIMIT_NOFILE, NULL, &lim) < 0 ? -1 : prlimit(p, RLIMIT_NOFILE, &lim, NULL));
        errno = 0;
        int nice = getpriority(PRIO_PROCESS, p);
        CALL("setpriority", errno ? -1 : setpriority(PRIO_PROCESS, p, nice));
        cpu_set_t cpus;
        CALL("sched_setaffinity",
             sched_getaffinity(p, sizeof cpus, &cpus) < 0 ? -1 : sched_setaffinity(p, sizeof cpus, &cpus));
        struct sched_param sp = {0};
        CALL("sched_setscheduler", sched_setscheduler(p, SCHED_OTHER, &sp));
        long prio = syscall(SYS_ioprio_get, 1, p);
        CALL("ioprio_set", prio < 0 ? -1 : syscall(SYS_ioprio_set, 1, p, prio));
        int fds[2];
        CALL("setown", pipe(fds) < 0 ? -1 : fcntl(fds[0], F_SETOWN, p));
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/status", p);
        CALL("proc", open(path, O_RDONLY));
        printf("\n");
        if (child) { kill(child, SIGKILL); waitpid(child, NULL, 0); }
        return 0;
    }
    /* Halves the soft RLIMIT_NOFILE of pid ARG. */
    if (!strcmp(a, "lowerlimit")) {
        struct rlimit lim;
        if (prlimit(atoi(arg), RLIMIT_NOFILE, NULL, &lim) < 0) return report(-1);
        lim.rlim_cur /= 2;
        return report(prlimit(atoi(arg), RLIMIT_NOFILE, &lim, NULL));
    }
    /* socket(FAMILY, TYPE, PROTOCOL), numbers as given. */
    if (!strcmp(a, "socket")) {
        if (argc < 5) { fprintf(stderr, "usage: probe socket FAMILY TYPE PROTOCOL\n"); return 2; }
        return report(socket(atoi(argv[2]), atoi(argv[3]), atoi(argv[4])));
    }
    /* socketpair(FAMILY, SOCK_STREAM, 0). */
    if (!strcmp(a, "socketpair")) {
        int sv[2];
        return report(socketpair(atoi(arg), SOCK_STREAM, 0, sv));
    }
    /* TIOCSETD with N_TTY (the discipline it already has) on a pseudo-terminal of its own. */
    if (!strcmp(a, "tiocsetd")) {
        int m = open("/dev/ptmx", O_RDWR | O_NOCTTY);
        if (m < 0) return report(-1);
        int ldisc = 0; /* N_TTY */
        return report(ioctl(m, TIOCSETD, &ldisc));
    }
    /* Gives the file ARG (argv[3]) a setuid or setgid mode by one route (argv[2]): "chmod",
     * "chmod-sgid", "fchmod", "fchmodat", "fchmodat2" on an existing file, or "open",
     * "creat", "mknod" making it. */
    if (!strcmp(a, "setid")) {
        if (argc < 4) { fprintf(stderr, "usage: probe setid ROUTE PATH\n"); return 2; }
        const char *route = argv[2], *path = argv[3];
        if (!strcmp(route, "chmod")) return report(chmod(path, 04755));
        if (!strcmp(route, "chmod-sgid")) return report(chmod(path, 02755));
        if (!strcmp(route, "fchmod")) {
            int fd = open(path, O_RDONLY);
            return report(fd < 0 ? -1 : fchmod(fd, 04755));
        }
        if (!strcmp(route, "fchmodat")) return report(syscall(SYS_fchmodat, AT_FDCWD, path, 04755));
        if (!strcmp(route, "fchmodat2")) return report(syscall(452, AT_FDCWD, path, 04755, 0));
        if (!strcmp(route, "open")) return report(open(path, O_WRONLY | O_CREAT | O_EXCL, 04755));
        if (!strcmp(route, "creat")) return report(syscall(SYS_creat, path, 02755));
        if (!strcmp(route, "mknod")) return report(mknod(path, S_IFREG | 04755, 0));
        fprintf(stderr, "unknown route %s\n", route);
        return 2;
    }
    /* Gives the file ARG file capabilities (security.capability, CAP_NET_RAW permitted and
     * effective). Outside a sandbox an unprivileged user may do it on a file of its own from
     * a user namespace of its own, which the probe first tries to make. */
    if (!strcmp(a, "setcap")) {
        uid_t uid = geteuid();
        gid_t gid = getegid();
        if (unshare(CLONE_NEWUSER) == 0) {
            char map[64];
            int fd = open("/proc/self/setgroups", O_WRONLY);
            if (fd >= 0) { write(fd, "deny", 4); close(fd); }
            snprintf(map, sizeof map, "0 %u 1", uid);
            fd = open("/proc/self/uid_map", O_WRONLY);
            if (fd >= 0) { write(fd, map, strlen(map)); close(fd); }
            snprintf(map, sizeof map, "0 %u 1", gid);
            fd = open("/proc/self/gid_map", O_WRONLY);
            if (fd >= 0) { write(fd, map, strlen(map)); close(fd); }
        }
        /* struct vfs_cap_data, revision 2: magic_etc, then {permitted, inheritable} x 2. */
        unsigned int cap[5] = {0x02000000 | 1 /* effective */, 1u << 13 /* CAP_NET_RAW */, 0, 0, 0};
        return report(setxattr(arg, "security.capability", cap, sizeof cap, 0));
    }
    /* Whether ARG carries file capabilities. */
    if (!strcmp(a, "hascap")) {
        char buf[64];
        return report(getxattr(arg, "security.capability", buf, sizeof buf));
    }
    /* Asks for every socket family, every IP and netlink protocol, an AF_ALG cipher and
     * every line discipline: on a host whose kernel has modules, each may load one. Prints
     * how many sockets were made. */
    if (!strcmp(a, "autoload")) {
        int made = 0, s;
        for (int f = 0; f < 46; f++)
            for (int t = 1; t <= 6; t++)
                if ((s = socket(f, t, 0)) >= 0) { made++; close(s); }
        int inet[2] = {AF_INET, AF_INET6}, types[4] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, 6};
        for (int i = 0; i < 2; i++)
            for (int p = 1; p <= 263; p++)
                for (int t = 0; t < 4; t++)
                    if ((s = socket(inet[i], types[t], p)) >= 0) { made++; close(s); }
        for (int p = 0; p < 32; p++)
            if ((s = socket(AF_NETLINK, SOCK_RAW, p)) >= 0) { made++; close(s); }
        if ((s = socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0)) >= 0) {
            struct { unsigned short family; unsigned char type[14]; unsigned int feat, mask; unsigned char name[64]; } alg;
            memset(&alg, 0, sizeof alg);
            alg.family = 38;
            strcpy((char *)alg.type, "skcipher");
            strcpy((char *)alg.name, "cbc(camellia)");
            bind(s, (struct sockaddr *)&alg, sizeof alg);
            close(s);
        }
        int m = open("/dev/ptmx", O_RDWR | O_NOCTTY);
        for (int ld = 1; m >= 0 && ld < 30; ld++) ioctl(m, TIOCSETD, &ld);
        printf("%d\n", made);
        return 0;
    }
    /* Makes and removes a file in the directory ARG, then puts the directory's access and
     * modification times back as they were (its change time moves; no call sets it). */
    if (!strcmp(a, "restoretimes")) {
        struct stat st;
        char path[256];
        if (stat(arg, &st) < 0) return report(-1);
        snprintf(path, sizeof path, "%s/probe-restoretimes", arg);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0) return report(-1);
        close(fd);
        unlink(path);
        struct timespec times[2] = {st.st_atim, st.st_mtim};
        if (utimensat(AT_FDCWD, arg, times, 0) < 0) return report(-1);
        struct stat after;
        if (stat(arg, &after) < 0) return report(-1);
        if (after.st_mtim.tv_sec != st.st_mtim.tv_sec || after.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
            printf("mtime not restored\n");
            return 1;
        }
        return report(0);
    }
    /* Leaves a zombie in its own process group whose parent lives in another group: a child
     * leaves the group, forks a grandchild that joins the group again and exits, and the
     * child, which does not reap it, sleeps. Prints "ready" once the zombie is there, then
     * sleeps itself. */
    if (!strcmp(a, "zombiegroup")) {
        pid_t group = getpgrp();
        int ready[2];
        if (pipe(ready) < 0) return report(-1);
        if (fork() == 0) {
            setpgid(0, 0);
            pid_t z = fork();
            if (z == 0) _exit(setpgid(0, group) < 0 ? 3 : 0);
            siginfo_t info;
            waitid(P_PID, z, &info, WEXITED | WNOWAIT); /* exited, not reaped */
            write(ready[1], "z", 1);
            for (;;) pause();
        }
        char c;
        if (read(ready[0], &c, 1) != 1) return report(-1);
        printf("ready\n");
        fflush(stdout);
        for (;;) pause();
    }
    /* Starts a background process that sends SIGSTOP to every process it may, again and
     * again (the next command's child among them, maybe before its execve). It starts once
     * the probe itself has said "ok" and exited, which it would stop otherwise. */
    if (!strcmp(a, "stopper")) {
        pid_t probe = getpid();
        report(0);
        fflush(stdout);
        if (fork() == 0) {
            setsid();
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0); dup2(null, 1); dup2(null, 2);
            while (getppid() == probe) usleep(1000);
            for (;;) kill(-1, SIGSTOP);
        }
        return 0;
    }
    /* Makes an IPv6 flow label (IPV6_FLOWLABEL_MGR, no packet sent) that lingers 60 s after
     * its socket closes. With ARG "count", first enters a network namespace of its own and,
     * once the socket is closed, prints how many labels /proc/net/ip6_flowlabel lists. */
    if (!strcmp(a, "flowlabel")) {
        struct { struct in6_addr dst; unsigned int label; unsigned char action, share;
                 unsigned short flags, expires, linger; unsigned int pad; } req;
        if (!strcmp(arg, "count") && unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0) return report(-1);
        int s = socket(AF_INET6, SOCK_DGRAM, 0);
        if (s < 0) return report(-1);
        memset(&req, 0, sizeof req);
        req.dst = in6addr_loopback;
        req.label = htonl(0x54321);
        req.action = 0;  /* IPV6_FL_A_GET */
        req.share = 1;   /* IPV6_FL_S_EXCL */
        req.flags = 1;   /* IPV6_FL_F_CREATE */
        req.linger = 60;
        if (setsockopt(s, IPPROTO_IPV6, 32 /* IPV6_FLOWLABEL_MGR */, &req, sizeof req) < 0) return report(-1);
        close(s);
        if (strcmp(arg, "count")) return report(0);
        FILE *f = fopen("/proc/self/net/ip6_flowlabel", "r");
        if (!f) return report(-1);
        char line[256];
        int lines = 0;
        while (fgets(line, sizeof line, f)) lines++;
        printf("%d\n", lines - 1);
        return 0;
    }
    /* Prints the buffer size of a new pipe (F_GETPIPE_SZ): 64 KiB, or 8 KiB once the user's
     * pipe budget (pipe-user-pages-soft) is spent. */
    if (!strcmp(a, "pipesize")) {
        int p[2];
        if (pipe(p) < 0) return report(-1);
        printf("%d\n", fcntl(p[0], F_GETPIPE_SZ));
        return 0;
    }
    /* Spends the user's pipe budget: pipes grown to 1 MiB each until the kernel refuses, then
     * default ones until a new pipe comes out small, all held open; prints "held N" and
     * sleeps. */
    if (!strcmp(a, "pipehog")) {
        int p[2], n = 0;
        while (n < 512 && pipe(p) == 0 && fcntl(p[0], F_SETPIPE_SZ, 1 << 20) > 0) n++;
        /* The rest in pipes of the default size, until a new one comes out small. */
        while (n < 1024 && pipe(p) == 0 && fcntl(p[0], F_GETPIPE_SZ) > 8192) n++;
        printf("held %d\n", n);
        fflush(stdout);
        for (;;) pause();
    }
    /* Gives the file ARG (argv[2]) a POSIX ACL that lets uid argv[3] read, write and run it
     * (system.posix_acl_access, version 2: user::rw- user:UID:rwx group::r-- mask::rwx
     * other::r--). */
    if (!strcmp(a, "setacl")) {
        if (argc < 4) { fprintf(stderr, "usage: probe setacl PATH UID\n"); return 2; }
        struct { unsigned short tag, perm; unsigned int id; } __attribute__((packed)) e[5] = {
            {0x01, 6, 0xffffffff}, {0x02, 7, (unsigned int)atoi(argv[3])}, {0x04, 4, 0xffffffff},
            {0x10, 7, 0xffffffff}, {0x20, 4, 0xffffffff}};
        unsigned char buf[4 + sizeof e];
        unsigned int version = 2;
        memcpy(buf, &version, 4);
        memcpy(buf + 4, e, sizeof e);
        return report(setxattr(argv[2], "system.posix_acl_access", buf, sizeof buf, 0));
    }
    /* Whether ARG carries an access ACL. */
    if (!strcmp(a, "hasacl")) {
        char buf[256];
        return report(getxattr(arg, "system.posix_acl_access", buf, sizeof buf));
    }
    fprintf(stderr, "unknown action %s\n", a);
    return 2;
}
