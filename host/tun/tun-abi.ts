/**
 * The kernel ABI numbers and layouts the TUN device uses: ioctl requests from
 * linux/if_tun.h and linux/sockios.h, flags, and struct ifreq offsets.
 * test/tun/abi.test.ts compiles test/tun/fixtures/tun-abi.c against the
 * installed headers and compares every value here, so a wrong number fails a
 * test instead of sending a bogus ioctl.
 */

// asm-generic/ioctl.h encoding (x86, arm, arm64, riscv, loongarch, s390).
// mips, powerpc and sparc encode direction differently; the header test would
// catch that on those machines.
const IOC_NRSHIFT = 0;
const IOC_TYPESHIFT = 8;
const IOC_SIZESHIFT = 16;
const IOC_DIRSHIFT = 30;
const IOC_WRITE = 1;
const IOC_READ = 2;

function ioc(dir: number, type: string, nr: number, size: number): number {
  // >>> 0 keeps it an unsigned 32-bit value (_IOR sets bit 31).
  return ((dir << IOC_DIRSHIFT) | (size << IOC_SIZESHIFT) | (type.charCodeAt(0) << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT)) >>> 0;
}
const IOW = (type: string, nr: number, size: number) => ioc(IOC_WRITE, type, nr, size);
const IOR = (type: string, nr: number, size: number) => ioc(IOC_READ, type, nr, size);

/** TUN ioctls (linux/if_tun.h); the size argument is the header's declared type, sizeof(int). */
export const TUNSETIFF = IOW("T", 202, 4);
export const TUNGETFEATURES = IOR("T", 207, 4);
export const TUNSETOFFLOAD = IOW("T", 208, 4);
export const TUNSETVNETHDRSZ = IOW("T", 216, 4);
/** Sets (or, with -1, clears) the program that picks a multi-queue TUN's queue for each packet it transmits. */
export const TUNSETSTEERINGEBPF = IOR("T", 224, 4);

/** Interface ioctls on any socket (linux/sockios.h). */
export const SIOCGIFFLAGS = 0x8913;
export const SIOCSIFFLAGS = 0x8914;
export const SIOCGIFMTU = 0x8921;
export const SIOCSIFMTU = 0x8922;

/** TUNSETIFF flags. */
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
/** Several fds (queues) on one device; the kernel spreads transmitted packets over them by flow. */
export const IFF_MULTI_QUEUE = 0x0100;

/** net_device_flags (linux/if.h). */
export const IFF_UP = 0x1;

/** TUNSETOFFLOAD bits. The kernel rejects (EINVAL) any bit it does not know, which is how we probe. */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
/**
 * UDP segmentation offload, Linux >= 6.2. Older installed headers lack these
 * (the values are from upstream include/uapi/linux/if_tun.h); the header test
 * compares them only where the headers define them.
 */
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

/** IFNAMSIZ, including the terminating NUL. */
export const IFNAMSIZ = 16;
/** sizeof(struct ifreq) on 64-bit Linux; ifr_flags and ifr_mtu share the union after the name. */
export const IFREQ_SIZE = 40;
export const IFREQ_FLAGS_OFFSET = 16;
export const IFREQ_MTU_OFFSET = 16;

/** open(2) flags (asm-generic/fcntl.h). */
export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** socket(2) arguments for the ioctl socket. */
export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = O_CLOEXEC;

/** poll(2): struct pollfd is { int fd; short events; short revents; }. */
export const POLLIN = 0x001;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;
export const POLLFD_SIZE = 8;
