/* Make a process see an AVX2-only x86 CPU: no AVX-512, no VNNI (AVX-512 or AVX), no AMX.
 *
 * Loaded with LD_PRELOAD by benchmarks/avx2_only.py. Linux's CPUID faulting (arch_prctl
 * ARCH_SET_CPUID, the "cpuid_fault" flag of /proc/cpuinfo) turns every CPUID instruction of this
 * process into a SIGSEGV; the handler runs the real CPUID with faulting briefly off, clears the
 * feature bits below, and resumes after the instruction. Libraries that pick their kernels by
 * CPUID when they load (ONNX Runtime's MLAS, numpy, FAISS's loader, tokenizers) then take their
 * AVX2 paths, on this machine's cores, clocks and caches: the instruction set is the one change.
 *
 * /proc/cpuinfo, which some code reads instead (paperlens picks its int8 weights by it), is
 * opened as a copy without those flags. The setting survives clone (every thread) and is reset
 * by execve, where the preload (inherited through LD_PRELOAD) sets it again. Another library's
 * SIGSEGV handler is kept aside and called for real faults.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* CPUID leaf 7, sub-leaf 0 */
#define EBX_AVX512 ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
#define ECX_AVX512 ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))          /* vbmi, vbmi2, vnni, bitalg, vpopcntdq */
#define EDX_AVX512 ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25)) /* 4vnniw, 4fmaps, vp2intersect, amx-bf16, fp16, amx-tile, amx-int8 */
/* CPUID leaf 7, sub-leaf 1 */
#define EAX_SUB1 ((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23)) /* avx-vnni, avx512-bf16, amx-fp16, avx-ifma */
#define EDX_SUB1 ((1u << 4) | (1u << 5) | (1u << 10))              /* avx-vnni-int8, avx-ne-convert, avx-vnni-int16 */

static struct sigaction chained; /* a handler someone else installed for SIGSEGV */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static void cpuid_unmasked(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *reg = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* not CPUID: a real fault */
        if (chained.sa_flags & SA_SIGINFO && chained.sa_sigaction) {
            chained.sa_sigaction(sig, info, context);
            return;
        }
        if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN && chained.sa_handler) {
            chained.sa_handler(sig);
            return;
        }
        signal(SIGSEGV, SIG_DFL); /* the instruction runs again and the process dies as it would have */
        return;
    }
    uint32_t leaf = (uint32_t)reg[REG_RAX], sub = (uint32_t)reg[REG_RCX], r[4];
    cpuid_unmasked(leaf, sub, r);
    if (leaf == 7 && sub == 0) {
        r[1] &= ~EBX_AVX512;
        r[2] &= ~ECX_AVX512;
        r[3] &= ~EDX_AVX512;
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~EAX_SUB1;
        r[3] &= ~EDX_SUB1;
    }
    reg[REG_RAX] = r[0];
    reg[REG_RBX] = r[1];
    reg[REG_RCX] = r[2];
    reg[REG_RDX] = r[3];
    reg[REG_RIP] += 2;
}

/* Keep our handler in place: a later SIGSEGV handler (Python's faulthandler, a crash reporter) is
 * stored and called for real faults instead. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction)
        real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV)
        return real_sigaction(sig, act, old);
    if (old)
        *old = chained;
    if (act)
        chained = *act;
    return 0;
}

/* Flags that name an instruction set hidden above. */
static int hidden_flag(const char *flag, size_t n) {
    static const char *prefixes[] = {"avx512", "amx", "avx_vnni", "avx_ifma", "avx_ne_convert", NULL};
    for (const char **p = prefixes; *p; p++)
        if (n >= strlen(*p) && strncmp(flag, *p, strlen(*p)) == 0)
            return 1;
    return 0;
}

/* A memfd holding /proc/cpuinfo less the hidden flags, or -1. */
static int masked_cpuinfo(void) {
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    int in = real_open("/proc/cpuinfo", O_RDONLY);
    if (in < 0)
        return -1;
    int out = memfd_create("cpuinfo", 0);
    char line[8192]; /* on the stack: two threads may open the file at once */
    size_t used = 0;
    char c;
    while (out >= 0 && read(in, &c, 1) == 1) {
        if (used < sizeof line - 1)
            line[used++] = c;
        if (c != '\n')
            continue;
        line[used] = 0;
        if (strncmp(line, "flags", 5) == 0) { /* rewrite the word list after the colon */
            char *colon = strchr(line, ':');
            size_t head = colon ? (size_t)(colon - line) + 1 : used;
            if (write(out, line, head) < 0)
                break;
            for (char *word = line + head; *word && *word != '\n';) {
                while (*word == ' ')
                    word++;
                size_t n = strcspn(word, " \n");
                if (n && !hidden_flag(word, n) && (write(out, " ", 1) < 0 || write(out, word, n) < 0))
                    break;
                word += n;
            }
            if (write(out, "\n", 1) < 0)
                break;
        } else if (write(out, line, used) < 0) {
            break;
        }
        used = 0;
    }
    close(in);
    if (out >= 0)
        lseek(out, 0, SEEK_SET);
    return out;
}

/* The masked copy when ``path`` is /proc/cpuinfo, else -1: the file itself is opened. */
static int opened_cpuinfo(const char *path) { return path && strcmp(path, "/proc/cpuinfo") == 0 ? masked_cpuinfo() : -1; }

/* open's optional third argument, there only with O_CREAT or O_TMPFILE. */
#define TAKE_MODE(flags, mode)                                                    \
    do {                                                                          \
        if ((flags) & (O_CREAT | O_TMPFILE)) {                                    \
            va_list args;                                                         \
            va_start(args, flags);                                                \
            mode = va_arg(args, mode_t);                                          \
            va_end(args);                                                         \
        }                                                                         \
    } while (0)

#define OPEN_WRAPPER(name)                                                        \
    int name(const char *path, int flags, ...) {                                  \
        mode_t mode = 0;                                                          \
        TAKE_MODE(flags, mode);                                                   \
        int fd = opened_cpuinfo(path);                                            \
        int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, #name);            \
        return fd >= 0 ? fd : real(path, flags, mode);                            \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                      \
    int name(int dir, const char *path, int flags, ...) {                         \
        mode_t mode = 0;                                                          \
        TAKE_MODE(flags, mode);                                                   \
        int fd = opened_cpuinfo(path);                                            \
        int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, #name);       \
        return fd >= 0 ? fd : real(dir, path, flags, mode);                       \
    }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

#define FOPEN_WRAPPER(name)                                                       \
    FILE *name(const char *path, const char *how) {                               \
        int fd = opened_cpuinfo(path);                                            \
        FILE *(*real)(const char *, const char *) = dlsym(RTLD_NEXT, #name);      \
        return fd >= 0 ? fdopen(fd, "r") : real(path, how);                       \
    }
FOPEN_WRAPPER(fopen)
FOPEN_WRAPPER(fopen64)

__attribute__((constructor)) static void hide_avx512(void) {
    real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (real_sigaction(SIGSEGV, &action, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "avx2_only: CPUID faulting is not available here (no cpuid_fault flag)\n");
        _exit(97);
    }
}
