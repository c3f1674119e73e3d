// g8init: the container helper of the node agent. Node cannot unshare, setns, or pivot_root
// (they need a single-threaded process), so this small static binary does it. Static because it
// is exec'd from the host and must not depend on anything inside a container root.
//
//   g8init run --root DIR --hostname H [--net] [--bind SRC:DST[:ro]]... [--cgroup-procs FILE]...
//     Starts a container: the child joins the cgroups and becomes PID 1 of new mount/uts/ipc/pid
//     (and net) namespaces with ROOT as its root. Prints "pid <host pid of PID 1>" once ready, or
//     "error <step>: <why>" and exits 1. Then waits for PID 1 (forwarding SIGTERM/SIGINT) and
//     exits with its status.
//   g8init enter --pid PID [--cwd DIR] [--cgroup-procs FILE]... [--unprivileged] -- CMD ARGS...
//     Runs CMD inside the container whose PID 1 is PID (--unprivileged: with a reduced capability
//     set) and exits as it does (same code, or the same signal). Errors: "g8init: <step>: <why>"
//     on stderr, exit 127.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 64

static int report_fd = 2;     // where fail() writes: stderr, or the ready pipe in PID 1
static const char *prefix = "g8init: ";
static int fail_code = 127;

static void fail(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  dprintf(report_fd, "%s", prefix);
  if (write(report_fd, buf, n) < 0) {}
  _exit(fail_code);
}

// cgroup.procs files are opened before entering the container (its root hides them) and
// written by the process that joins: "0" means the writer itself.
static void open_cgroups(char **files, int n, int *fds) {
  for (int i = 0; i < n; i++) {
    fds[i] = open(files[i], O_WRONLY | O_CLOEXEC);
    if (fds[i] < 0) fail("cgroup %s: %s", files[i], strerror(errno));
  }
}

static void join_cgroups(int *fds, int n) {
  for (int i = 0; i < n; i++) {
    if (write(fds[i], "0\n", 2) < 0) fail("join cgroup: %s", strerror(errno));
    close(fds[i]);
  }
}

// mkdir -p, relative to the current root.
static void mkdirs(const char *path, mode_t mode) {
  char p[4096];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(p, 0755) < 0 && errno != EEXIST) fail("mkdir %s: %s", p, strerror(errno));
    *s = '/';
  }
  if (mkdir(p, mode) < 0 && errno != EEXIST) fail("mkdir %s: %s", p, strerror(errno));
}

static void do_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  if (mount(src, dst, type, flags, data) < 0) fail("mount %s on %s: %s", type ? type : src, dst, strerror(errno));
}

// A bind source is cloned (open_tree) on the host before pivot_root and attached after the old
// root is gone, so its target resolves inside the container only: a symlink in the flist cannot
// point a mount (or a mkdir) at a host path.
struct bind { int fd; int dir; char dst[4096]; };

static void open_bind(struct bind *b, const char *spec, const char *defdst) {
  char src[4096];
  int ro = 0;
  snprintf(src, sizeof src, "%s", spec);
  if (defdst) snprintf(b->dst, sizeof b->dst, "%s", defdst);
  else {
    char *c = strchr(src, ':');
    if (!c) fail("--bind %s: expected SRC:DST[:ro]", spec);
    *c++ = 0;
    char *o = strchr(c, ':');
    if (o) {
      *o++ = 0;
      if (strcmp(o, "ro") != 0) fail("--bind %s: unknown option %s", spec, o);
      ro = 1;
    }
    snprintf(b->dst, sizeof b->dst, "%s", c);
  }
  b->fd = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (b->fd < 0) fail("bind %s: %s", src, strerror(errno));
  struct stat st;
  if (fstat(b->fd, &st) < 0) fail("stat %s: %s", src, strerror(errno));
  b->dir = S_ISDIR(st.st_mode);
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
  if (ro && mount_setattr(b->fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
    fail("bind %s read-only: %s", src, strerror(errno));
}

static void attach_bind(struct bind *b) {
  char *slash = strrchr(b->dst, '/');
  if (b->dir) mkdirs(b->dst, 0755);
  else {
    if (slash && slash != b->dst) {
      *slash = 0;
      mkdirs(b->dst, 0755);
      *slash = '/';
    }
    int fd = open(b->dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EISDIR) fail("create %s: %s", b->dst, strerror(errno));
    if (fd >= 0) close(fd);
  }
  if (move_mount(b->fd, "", AT_FDCWD, b->dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) fail("bind on %s: %s", b->dst, strerror(errno));
  close(b->fd);
}

static void lo_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket: %s", strerror(errno));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail("lo flags: %s", strerror(errno));
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail("lo up: %s", strerror(errno));
  close(s);
}

// Unprivileged containers keep only what Docker keeps by default: no CAP_SYS_ADMIN (mounts),
// CAP_DAC_READ_SEARCH (open_by_handle_at escapes), CAP_NET_ADMIN, CAP_SYS_MODULE, and so on.
static void drop_caps(void) {
  static const int keep[] = {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID,
                             CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_SYS_CHROOT, CAP_MKNOD,
                             CAP_AUDIT_WRITE, CAP_SETFCAP};
  uint64_t mask = 0;
  for (unsigned i = 0; i < sizeof keep / sizeof *keep; i++) mask |= 1ULL << keep[i];
  for (int cap = 0; cap < 64; cap++)
    if (!(mask & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
      fail("drop capability %d: %s", cap, strerror(errno));
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) < 0) fail("capget: %s", strerror(errno));
  for (int i = 0; i < 2; i++) {
    uint32_t m = (uint32_t)(mask >> (32 * i));
    d[i].effective &= m, d[i].permitted &= m, d[i].inheritable &= m;
  }
  if (syscall(SYS_capset, &h, d) < 0) fail("capset: %s", strerror(errno));
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }
static void nothing(int sig) { (void)sig; }

// PID 1: reap every child; on SIGTERM/SIGINT end everything in the namespace and exit 0.
static void init_loop(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  for (;;) {
    int sig = sigwaitinfo(&set, NULL);
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    if (sig != SIGTERM && sig != SIGINT) continue;
    kill(-1, SIGTERM);
    struct timespec now, end, step = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += 3;
    for (;;) {
      while (waitpid(-1, NULL, WNOHANG) > 0) {}
      if (kill(-1, 0) < 0 && errno == ESRCH) break;  // nobody left (entered processes included)
      clock_gettime(CLOCK_MONOTONIC, &now);
      if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec)) break;
      sigtimedwait(&set, NULL, &step);
    }
    kill(-1, SIGKILL);
    _exit(0);
  }
}

static int run_main(int argc, char **argv) {
  const char *root = NULL, *hostname = "corex";
  int net = 0, nbind = 0, ncg = 0;
  char *binds[MAX_LIST], *cgroups[MAX_LIST];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "--net")) net = 1;
    else if (!strcmp(a, "--root") && more) root = argv[++i];
    else if (!strcmp(a, "--hostname") && more) hostname = argv[++i];
    else if (!strcmp(a, "--bind") && more && nbind < MAX_LIST) binds[nbind++] = argv[++i];
    else if (!strcmp(a, "--cgroup-procs") && more && ncg < MAX_LIST) cgroups[ncg++] = argv[++i];
    else fail("run: bad argument %s", a);
  }
  if (!root) fail("run: --root is required");
  prefix = "error ";
  report_fd = 1;
  fail_code = 1;
  int cgfds[MAX_LIST];
  open_cgroups(cgroups, ncg, cgfds);

  int ready[2];
  if (pipe2(ready, O_CLOEXEC) < 0) fail("pipe: %s", strerror(errno));
  // Only children enter the new pid namespace: this process stays outside, watching PID 1.
  if (unshare(CLONE_NEWPID) < 0) fail("unshare pid: %s", strerror(errno));
  pid_t child = fork();
  if (child < 0) fail("fork: %s", strerror(errno));

  if (child == 0) {
    close(ready[0]);
    report_fd = ready[1];
    prefix = "";
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // the watcher is the agent's handle on us
    // only PID 1 and its descendants: a watcher left to the host's init must not pin the cgroups
    join_cgroups(cgfds, ncg);
    int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | (net ? CLONE_NEWNET : 0);
    if (unshare(flags) < 0) fail("unshare: %s", strerror(errno));
    // Nothing we mount may propagate back to the host.
    do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    // pivot_root needs the new root to be a mount point.
    if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0) fail("bind %s: %s", root, strerror(errno));
    static const char *devs[] = {"null", "zero", "full", "random", "urandom", "tty"};
    int ndev = sizeof devs / sizeof *devs;
    struct bind b[MAX_LIST + 8];
    for (int i = 0; i < ndev; i++) {
      char src[64], dst[64];
      snprintf(src, sizeof src, "/dev/%s", devs[i]);
      snprintf(dst, sizeof dst, "/dev/%s", devs[i]);
      open_bind(&b[i], src, dst);
    }
    for (int i = 0; i < nbind; i++) open_bind(&b[ndev + i], binds[i], NULL);

    // pivot_root(".", "."): the old root ends up stacked on the new one and is detached at once,
    // before anything is created inside the container.
    if (chdir(root) < 0) fail("chdir %s: %s", root, strerror(errno));
    if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root %s: %s", root, strerror(errno));
    if (umount2(".", MNT_DETACH) < 0) fail("detach the old root: %s", strerror(errno));
    if (chdir("/") < 0) fail("chdir /: %s", strerror(errno));

    mkdirs("/proc", 0555);
    do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mkdirs("/sys", 0555);
    do_mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mkdirs("/dev", 0755);
    do_mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
    for (int i = 0; i < ndev + nbind; i++) attach_bind(&b[i]);
    mkdirs("/dev/pts", 0755);
    do_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    if (symlink("pts/ptmx", "/dev/ptmx") < 0) fail("symlink /dev/ptmx: %s", strerror(errno));
    mkdirs("/dev/shm", 01777);
    do_mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k");
    if (symlink("/proc/self/fd", "/dev/fd") < 0 || symlink("/proc/self/fd/0", "/dev/stdin") < 0 ||
        symlink("/proc/self/fd/1", "/dev/stdout") < 0 || symlink("/proc/self/fd/2", "/dev/stderr") < 0)
      fail("symlink /dev/fd: %s", strerror(errno));

    if (sethostname(hostname, strlen(hostname)) < 0) fail("sethostname %s: %s", hostname, strerror(errno));
    if (net) lo_up();

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    // PID 1 only gets signals it handles: give them a handler, then take them synchronously.
    signal(SIGTERM, nothing);
    signal(SIGINT, nothing);
    signal(SIGCHLD, nothing);
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (write(ready[1], "ok\n", 3) < 0) _exit(1);
    close(ready[1]);
    // hold none of the agent's pipes
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) dup2(null, 0), dup2(null, 1), dup2(null, 2);
    for (int fd = 3; fd < 1024; fd++) close(fd);
    init_loop();
  }

  close(ready[1]);
  for (int i = 0; i < ncg; i++) close(cgfds[i]);
  char msg[600];
  int n = 0, r;
  while (n < (int)sizeof msg - 1 && (r = read(ready[0], msg + n, sizeof msg - 1 - n)) != 0) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    n += r;
  }
  msg[n] = 0;
  close(ready[0]);
  if (strcmp(msg, "ok\n") != 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    if (n == 0) fail("container init died during setup");
    printf("error %s", msg);
    fflush(stdout);
    return 1;
  }
  printf("pid %d\n", child);
  fflush(stdout);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  int status;
  for (;;) {
    pid_t w = waitpid(child, &status, 0);
    if (w == child) break;
    if (w < 0 && errno != EINTR) return 1;
    if (got_signal) kill(child, got_signal), got_signal = 0;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

static int enter_main(int argc, char **argv) {
  int pid = 0, ncg = 0, unprivileged = 0, i;
  const char *cwd = "/";
  char *cgroups[MAX_LIST];
  for (i = 2; i < argc; i++) {
    const char *a = argv[i];
    int more = i + 1 < argc;
    if (!strcmp(a, "--")) { i++; break; }
    if (!strcmp(a, "--unprivileged")) unprivileged = 1;
    else if (!strcmp(a, "--pid") && more) pid = atoi(argv[++i]);
    else if (!strcmp(a, "--cwd") && more) cwd = argv[++i];
    else if (!strcmp(a, "--cgroup-procs") && more && ncg < MAX_LIST) cgroups[ncg++] = argv[++i];
    else fail("enter: bad argument %s", a);
  }
  if (pid <= 0 || i >= argc) fail("enter: usage: g8init enter --pid PID [--cwd DIR] -- CMD ARGS...");
  char **cmd = argv + i;
  int cgfds[MAX_LIST];
  open_cgroups(cgroups, ncg, cgfds);

  static const char *kinds[] = {"ipc", "uts", "net", "pid", "mnt"};
  int fds[5];
  char p[64], self[64];
  for (int k = 0; k < 5; k++) {
    snprintf(p, sizeof p, "/proc/%d/ns/%s", pid, kinds[k]);
    fds[k] = open(p, O_RDONLY | O_CLOEXEC);
    if (fds[k] < 0) fail("open %s: %s", p, strerror(errno));
    // a host-network container shares our net namespace; joining what we are in is skipped
    struct stat a, b;
    snprintf(self, sizeof self, "/proc/self/ns/%s", kinds[k]);
    if (fstat(fds[k], &a) == 0 && stat(self, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
      // a pid that is no container's init (reused after the container died) must not run CMD here
      if (!strcmp(kinds[k], "pid") || !strcmp(kinds[k], "mnt")) fail("pid %d is not a container", pid);
      close(fds[k]);
      fds[k] = -1;
    }
  }
  snprintf(p, sizeof p, "/proc/%d/root", pid);
  int rootfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) fail("open %s: %s", p, strerror(errno));
  for (int k = 0; k < 5; k++)
    if (fds[k] >= 0 && setns(fds[k], 0) < 0) fail("setns %s: %s", kinds[k], strerror(errno));
  if (fchdir(rootfd) < 0 || chroot(".") < 0) fail("chroot: %s", strerror(errno));
  if (chdir(cwd) < 0) fail("chdir %s: %s", cwd, strerror(errno));

  // Block the forwarded signals until the child exists, so none is lost.
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, &old);
  pid_t child = fork();  // the child is inside the pid namespace
  if (child < 0) fail("fork: %s", strerror(errno));
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    // whoever kills us (a job's SIGKILL) kills CMD too; our parent is outside the namespace, so
    // getppid() is 0 while it lives and 1 (the container's init) once it died
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != 0) _exit(127);
    // CMD and all it starts are bounded by the container's cgroups (pids.max stops a fork bomb)
    join_cgroups(cgfds, ncg);
    if (unprivileged) drop_caps();
    execvp(cmd[0], cmd);
    fail("exec %s: %s", cmd[0], strerror(errno));
  }
  for (int k = 0; k < ncg; k++) close(cgfds[k]);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);
  int status;
  for (;;) {
    pid_t w = waitpid(child, &status, 0);
    if (w == child) break;
    if (w < 0 && errno != EINTR) fail("wait: %s", strerror(errno));
    if (got_signal) kill(child, got_signal), got_signal = 0;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  // die the same death, so the caller sees the child's signal
  int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  prctl(PR_SET_DUMPABLE, 0);  // no core file of ours for a child's SIGSEGV
  raise(sig);
  return 128 + sig;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "run")) return run_main(argc, argv);
  if (argc >= 2 && !strcmp(argv[1], "enter")) return enter_main(argc, argv);
  fail("usage: g8init run --root DIR ... | g8init enter --pid PID ... -- CMD ARGS...");
  return 127;
}
