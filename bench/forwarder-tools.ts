/**
 * The C side of the forwarder suite (bench/forwarder.ts): one small program,
 * written to a temporary directory and compiled with `cc -O2` at run time,
 * with four modes. Every mode prints JSON lines on stdout (flushed), so the
 * suite reads it with NetnsProcess like the traffic agent.
 *
 *   loop <tun> <cpu>       the "plain C read/write loop" baseline: create TUN <tun>
 *                          (IFF_TUN | IFF_NO_PI, blocking fd, nothing else: no vnet
 *                          header, no offloads, MTU left at the kernel's 1500), print
 *                          {"ready":true}, then read(2) a packet and write(2) it straight
 *                          back until SIGTERM; prints {"reads","writes","writeErrors"}.
 *   blast <dst> <port> <flows> <ipBytes> <seconds> <cpu>
 *                          UDP sender: <flows> connected sockets (one source port
 *                          each) to <dst>:<port>, sendmmsg(2) of 64 datagrams per call,
 *                          round robin over the sockets, as fast as the kernel takes
 *                          them, until <seconds> pass or SIGTERM. Each datagram's
 *                          payload is <ipBytes> - 28, so the IPv4 packet is <ipBytes>.
 *                          Prints {"ready":true} first and {"sent","calls","errors",
 *                          "seconds"} at the end.
 *   sink <addr> <port>     binds a UDP socket with the smallest receive buffer and never
 *                          reads it: datagrams reach the socket layer and are dropped
 *                          there (no ICMP port unreachable flowing back, no receiving
 *                          process competing for the CPUs). Runs until killed.
 *   pin <tid> <cpu>        sched_setaffinity(2) of thread <tid> to one CPU.
 *
 * <cpu> -1 means "do not pin".
 */
export const TOOL_SOURCE = String.raw`#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static void handle_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: a blocked read/sendmmsg returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
}

static int pin_thread(pid_t tid, int cpu) {
  if (cpu < 0) return 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(tid, sizeof set, &set) != 0) {
    fprintf(stderr, "sched_setaffinity(%d, cpu %d): %s\n", (int)tid, cpu, strerror(errno));
    return -1;
  }
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int loop_main(const char *name, int cpu) {
  if (pin_thread(0, cpu) != 0) return 1;
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) { fprintf(stderr, "open /dev/net/tun: %s\n", strerror(errno)); return 1; }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) { fprintf(stderr, "TUNSETIFF %s: %s\n", name, strerror(errno)); return 1; }
  handle_stop_signals();
  printf("{\"ready\":true,\"device\":\"%s\"}\n", ifr.ifr_name);
  fflush(stdout);
  static unsigned char buf[65536];
  unsigned long long reads = 0, writes = 0, write_errors = 0;
  while (!stop_flag) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "read: %s\n", strerror(errno));
      return 1;
    }
    reads++;
    if (write(fd, buf, (size_t)n) == n) writes++; else write_errors++;
  }
  printf("{\"reads\":%llu,\"writes\":%llu,\"writeErrors\":%llu}\n", reads, writes, write_errors);
  fflush(stdout);
  close(fd);
  return 0;
}

#define VLEN 64
#define MAX_FLOWS 256

static int blast_main(const char *dst, int port, int flows, int ip_bytes, double seconds, int cpu) {
  if (pin_thread(0, cpu) != 0) return 1;
  if (flows < 1 || flows > MAX_FLOWS) { fprintf(stderr, "flows must be 1..%d\n", MAX_FLOWS); return 1; }
  int payload = ip_bytes - 20 - 8;
  if (payload < 0 || payload > 1472) { fprintf(stderr, "ip packet size %d out of range\n", ip_bytes); return 1; }
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, dst, &to.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", dst); return 1; }
  int fds[MAX_FLOWS];
  for (int i = 0; i < flows; i++) {
    fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fds[i] < 0) { fprintf(stderr, "socket: %s\n", strerror(errno)); return 1; }
    if (connect(fds[i], (struct sockaddr *)&to, sizeof to) != 0) { fprintf(stderr, "connect: %s\n", strerror(errno)); return 1; }
  }
  static unsigned char data[1472];
  memset(data, 0x5a, sizeof data);
  static struct mmsghdr msgs[VLEN];
  static struct iovec iov[VLEN];
  for (int i = 0; i < VLEN; i++) {
    iov[i].iov_base = data;
    iov[i].iov_len = (size_t)payload;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  handle_stop_signals();
  printf("{\"ready\":true}\n");
  fflush(stdout);
  unsigned long long sent = 0, calls = 0, errors = 0;
  double start = now_s(), end = start + seconds;
  int k = 0;
  while (!stop_flag && now_s() < end) {
    int r = sendmmsg(fds[k], msgs, VLEN, 0);
    k = (k + 1) % flows;
    if (r < 0) {
      if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) { errors++; continue; }
      fprintf(stderr, "sendmmsg: %s\n", strerror(errno));
      return 1;
    }
    sent += (unsigned long long)r;
    calls++;
  }
  printf("{\"sent\":%llu,\"calls\":%llu,\"errors\":%llu,\"seconds\":%.6f}\n", sent, calls, errors, now_s() - start);
  fflush(stdout);
  return 0;
}

static int sink_main(const char *addr, int port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { fprintf(stderr, "socket: %s\n", strerror(errno)); return 1; }
  int small = 1; /* the kernel rounds it up to its minimum */
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  struct sockaddr_in me;
  memset(&me, 0, sizeof me);
  me.sin_family = AF_INET;
  me.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, addr, &me.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", addr); return 1; }
  if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0) { fprintf(stderr, "bind: %s\n", strerror(errno)); return 1; }
  handle_stop_signals();
  printf("{\"ready\":true}\n");
  fflush(stdout);
  while (!stop_flag) pause();
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 4 && strcmp(argv[1], "loop") == 0) return loop_main(argv[2], atoi(argv[3]));
  if (argc >= 8 && strcmp(argv[1], "blast") == 0)
    return blast_main(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atof(argv[6]), atoi(argv[7]));
  if (argc >= 4 && strcmp(argv[1], "sink") == 0) return sink_main(argv[2], atoi(argv[3]));
  if (argc >= 4 && strcmp(argv[1], "pin") == 0) {
    if (pin_thread((pid_t)atoi(argv[2]), atoi(argv[3])) != 0) return 1;
    printf("{\"pinned\":%d,\"cpu\":%d}\n", atoi(argv[2]), atoi(argv[3]));
    return 0;
  }
  fprintf(stderr, "usage: loop <tun> <cpu> | blast <dst> <port> <flows> <ipBytes> <seconds> <cpu> | sink <addr> <port> | pin <tid> <cpu>\n");
  return 2;
}
`;
