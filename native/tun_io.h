/* What native/tun_io.c and native/tun_gso_write.c share inside libtun_io.so. */
#pragma once
#include <stdint.h>

/*
 * Syscalls the library made (read, write, writev, io_uring_enter), every
 * thread of the process together: the forwarder suites divide the kernel's
 * tick-sampled user time by it (bench/thread-times.ts says why they need it).
 */
extern uint64_t tun_io_syscalls_made __attribute__((visibility("hidden")));
#define COUNT_SYSCALL() __atomic_fetch_add(&tun_io_syscalls_made, 1, __ATOMIC_RELAXED)
