// symtrace: which functions of a program run, in the order they first run.
//
// Puts a breakpoint (int3) on every function of SYMBOLS ("ADDR NAME" lines,
// addresses of a non-PIE binary), runs the command under ptrace, follows
// every fork and clone, and prints each function's name the first time any
// process reaches it; the breakpoint is then taken out of that process.
// A process that execs another program is left alone from then on.
//
// Used by scripts/link-order/generate.sh to lay out brig's code: functions
// that run together get linked together (see that script for why).
//
// usage: symtrace SYMBOLS OUT -- COMMAND [ARGS...]
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

struct sym {
    uint64_t addr;
    char *name;
    unsigned char orig;
    int hit;
};

static struct sym *syms;
static size_t nsyms;

static int by_addr(const void *a, const void *b) {
    uint64_t x = ((const struct sym *)a)->addr, y = ((const struct sym *)b)->addr;
    return x < y ? -1 : x > y;
}

static struct sym *find(uint64_t addr) {
    size_t lo = 0, hi = nsyms;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (syms[mid].addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nsyms && syms[lo].addr == addr ? &syms[lo] : NULL;
}

// Tracees, and which of them exec'd another program (left alone then).
#define MAXP 4096
static pid_t alive[MAXP], foreign[MAXP];
static int nalive, nforeign;

static int member(pid_t *set, int n, pid_t p) {
    for (int i = 0; i < n; i++)
        if (set[i] == p)
            return 1;
    return 0;
}
static void add(pid_t *set, int *n, pid_t p) {
    if (!member(set, *n, p) && *n < MAXP)
        set[(*n)++] = p;
}
static void drop(pid_t *set, int *n, pid_t p) {
    for (int i = 0; i < *n; i++)
        if (set[i] == p)
            set[i] = set[--*n];
}

static int write_byte(pid_t p, uint64_t addr, unsigned char b) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", p);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return -1;
    ssize_t n = pwrite(fd, &b, 1, (off_t)addr);
    close(fd);
    return n == 1 ? 0 : -1;
}

// Puts the breakpoints in (`on`) or takes the remaining ones out.
static void patch(pid_t p, int on) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", p);
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        perror("open mem");
        exit(1);
    }
    unsigned char cc = 0xcc;
    for (size_t i = 0; i < nsyms; i++) {
        if (i > 0 && syms[i].addr == syms[i - 1].addr) {
            syms[i].orig = syms[i - 1].orig;
            continue;
        }
        if (on && pread(fd, &syms[i].orig, 1, (off_t)syms[i].addr) != 1) {
            fprintf(stderr, "symtrace: cannot read %s\n", syms[i].name);
            exit(1);
        }
        if (pwrite(fd, on ? &cc : &syms[i].orig, 1, (off_t)syms[i].addr) != 1) {
            fprintf(stderr, "symtrace: cannot patch %s at %#lx\n", syms[i].name,
                    (unsigned long)syms[i].addr);
            exit(1);
        }
    }
    close(fd);
}

// Lets a tracee that outlives the command (a created container's init) go
// on untraced and without breakpoints.
static void release(pid_t p) {
    kill(p, SIGSTOP);
    int st;
    for (;;) {
        if (waitpid(p, &st, __WALL) < 0)
            return;
        if (WIFEXITED(st) || WIFSIGNALED(st))
            return;
        if (WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP && (st >> 16) == 0)
            break;
        ptrace(PTRACE_CONT, p, 0, 0);
    }
    if (!member(foreign, nforeign, p))
        patch(p, 0);
    ptrace(PTRACE_DETACH, p, 0, 0);
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: symtrace SYMBOLS OUT -- COMMAND [ARGS...]\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    size_t cap = 1 << 14;
    syms = malloc(cap * sizeof *syms);
    char line[8192];
    while (fgets(line, sizeof line, in)) {
        char name[8000];
        unsigned long a;
        if (sscanf(line, "%lx %7999s", &a, name) != 2)
            continue;
        if (nsyms == cap)
            syms = realloc(syms, (cap *= 2) * sizeof *syms);
        syms[nsyms].addr = a;
        syms[nsyms].name = strdup(name);
        syms[nsyms].hit = 0;
        nsyms++;
    }
    fclose(in);
    qsort(syms, nsyms, sizeof *syms, by_addr);
    FILE *out = fopen(argv[2], "a");
    if (!out) {
        perror(argv[2]);
        return 1;
    }

    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        execvp(argv[4], argv + 4);
        perror(argv[4]);
        _exit(127);
    }
    int st;
    waitpid(child, &st, 0);
    ptrace(PTRACE_SETOPTIONS, child, 0,
           PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC);
    ptrace(PTRACE_CONT, child, 0, 0);
    add(alive, &nalive, child);
    int armed = 0, code = 0;
    for (;;) {
        pid_t p = waitpid(-1, &st, __WALL);
        if (p < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            drop(alive, &nalive, p);
            if (p == child) {
                code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            continue;
        }
        if (!WIFSTOPPED(st))
            continue;
        add(alive, &nalive, p);
        int sig = WSTOPSIG(st), event = st >> 16, inject = 0;
        if (event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK ||
            event == PTRACE_EVENT_CLONE) {
            unsigned long np;
            ptrace(PTRACE_GETEVENTMSG, p, 0, &np);
            add(alive, &nalive, (pid_t)np);
            if (member(foreign, nforeign, p))
                add(foreign, &nforeign, (pid_t)np);
        } else if (event == PTRACE_EVENT_EXEC) {
            if (!armed && p == child) {
                patch(p, 1);
                armed = 1;
            } else {
                add(foreign, &nforeign, p);
            }
        } else if (sig == SIGTRAP && event == 0 && armed && !member(foreign, nforeign, p)) {
            struct user_regs_struct r;
            ptrace(PTRACE_GETREGS, p, 0, &r);
            struct sym *s = find(r.rip - 1);
            if (s) {
                // Every alias at this address counts as run.
                struct sym *first = s;
                while (first > syms && first[-1].addr == s->addr)
                    first--;
                for (struct sym *t = first; t < syms + nsyms && t->addr == s->addr; t++)
                    if (!t->hit) {
                        t->hit = 1;
                        fprintf(out, "%s\n", t->name);
                    }
                write_byte(p, s->addr, s->orig);
                r.rip -= 1;
                ptrace(PTRACE_SETREGS, p, 0, &r);
            } else {
                inject = sig;
            }
        } else if (sig == SIGSTOP && event == 0) {
            // A new child's first stop.
        } else if (event == 0) {
            inject = sig;
        }
        ptrace(PTRACE_CONT, p, 0, inject);
    }
    while (nalive > 0) {
        pid_t p = alive[0];
        drop(alive, &nalive, p);
        release(p);
    }
    fclose(out);
    return code;
}
