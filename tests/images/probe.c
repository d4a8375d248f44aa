/* Tries system calls a seccomp profile decides on and prints one line per
 * call: "name=OK" or "name=<errno name>". Built static, the only file of
 * the test image probe.sh makes. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long ret) {
    if (ret >= 0)
        printf("%s=OK\n", name);
    else
        printf("%s=%s\n", name, strerrorname_np(errno));
}

/* A child made by clone or clone3 exits at once; the parent reaps it. */
static long reaped(long pid) {
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, __WALL);
    return pid;
}

static void *thread_main(void *arg) { return arg; }

int main(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long fd = syscall(SYS_io_uring_setup, 4, &params);
    report("io_uring_setup", fd);
    if (fd >= 0)
        close(fd);

    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    report("clone3_newuser", reaped(syscall(SYS_clone3, &args, sizeof args)));
    report("clone_fork", reaped(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0)));
    report("clone_newuser", reaped(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)));
    report("unshare_newns", unshare(CLONE_NEWNS));
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    report("personality_no_randomize", personality(ADDR_NO_RANDOMIZE));

    pthread_t t;
    int err = pthread_create(&t, NULL, thread_main, NULL);
    if (err == 0)
        pthread_join(t, NULL);
    errno = err;
    report("thread", err == 0 ? 0 : -1);

    /* What every shell does: stat, pipe, mkdir. */
    struct stat st;
    report("stat", stat("/", &st));
    int fds[2];
    report("pipe", pipe(fds));
    report("mkdir", mkdir("/tmp/probe-dir", 0755));
    return 0;
}
