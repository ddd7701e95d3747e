/*
 * ESP (RFC 4303) with AES-GCM (RFC 4106) in UDP (RFC 3948), batch seal/open
 * over libcrypto, and batch UDP I/O with sendmmsg/recvmmsg: the hot loop of
 * membrane's userspace ESP path (host/sys/esp-native.ts binds it through
 * koffi; host/encrypt/esp.ts is the reference the bytes must equal).
 *
 * Why native: node:crypto creates a cipher per packet (key schedule, GHASH
 * tables: ~3.4 us) and crosses into C several times per packet. Here an SA
 * keeps one EVP context per direction with the key set once; a packet only
 * sets its IV. One FFI call covers a whole batch.
 *
 * Packet slots: the caller lays out n slots of `stride` bytes in one buffer.
 * Seal: the inner packet at offset 24 of its slot (behind UDP 8 + SPI 4 +
 * seq 4 + IV 8); on return the slot holds the whole datagram, UDP header
 * included, exactly what esp.ts seal() returns. Open: the datagram (UDP
 * header included) from offset 0; on return the inner packet is at 24.
 * Both run in place (GCM allows out == in).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>

#define UDP_HDR 8
#define BODY 24 /* UDP 8 + SPI 4 + seq 4 + IV 8 */
#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41

/* Open results (negative): named drops, same names as esp.ts EspDrop. */
#define DROP_TRUNCATED -1
#define DROP_BAD_ICV -2
#define DROP_BAD_PADDING -3
#define DROP_BAD_NEXT_HEADER -4
#define DROP_NO_SA -5

typedef struct esp_sa {
  EVP_CIPHER_CTX *enc;
  EVP_CIPHER_CTX *dec;
  uint8_t nonce[12]; /* salt (4) || IV (8) */
  int icv;
} esp_sa;

int esp_abi_version(void) { return 1; }

void esp_sa_free(esp_sa *sa) {
  if (!sa) return;
  EVP_CIPHER_CTX_free(sa->enc);
  EVP_CIPHER_CTX_free(sa->dec);
  OPENSSL_cleanse(sa, sizeof *sa);
  free(sa);
}

/* A context per direction, key schedule done once. NULL on a bad argument or a libcrypto failure. */
esp_sa *esp_sa_new(const uint8_t *key, int key_len, const uint8_t *salt, int icv) {
  if (key_len != 16 || (icv != 8 && icv != 12 && icv != 16)) return NULL;
  esp_sa *sa = calloc(1, sizeof *sa);
  if (!sa) return NULL;
  sa->icv = icv;
  memcpy(sa->nonce, salt, 4);
  sa->enc = EVP_CIPHER_CTX_new();
  sa->dec = EVP_CIPHER_CTX_new();
  if (!sa->enc || !sa->dec ||
      EVP_EncryptInit_ex(sa->enc, EVP_aes_128_gcm(), NULL, key, sa->nonce) != 1 ||
      EVP_DecryptInit_ex(sa->dec, EVP_aes_128_gcm(), NULL, key, sa->nonce) != 1) {
    esp_sa_free(sa);
    return NULL;
  }
  return sa;
}

static inline void put16(uint8_t *p, uint32_t v) { p[0] = v >> 8; p[1] = v; }
static inline void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static inline uint32_t get32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }

/*
 * Seals n packets. sas[i] (an esp_sa *), spi[i], seq[i] per packet; len[i]
 * the inner length in, the datagram length out (0: the slot is too small or
 * the SA failed; the caller counts a drop). Returns how many were sealed.
 */
int esp_seal_batch(esp_sa *const *sas, const uint32_t *spi, const uint32_t *seq, uint8_t *buf, uint32_t stride,
                   uint32_t *len, int n, uint32_t sport, uint32_t dport) {
  int sealed = 0;
  for (int i = 0; i < n; i++) {
    esp_sa *sa = sas[i];
    uint8_t *out = buf + (size_t)i * stride;
    uint32_t inner = len[i];
    uint32_t plain = (inner + 2 + 3) & ~3u;
    uint32_t pad = plain - inner - 2;
    uint32_t total = BODY + plain + (sa ? sa->icv : 0);
    len[i] = 0;
    if (!sa || inner == 0 || total > stride || total > 0xffff) continue;
    uint8_t next = (out[BODY] >> 4) == 6 ? IPPROTO_IPV6_ : IPPROTO_IPIP_;
    put16(out, sport);
    put16(out + 2, dport);
    put16(out + 4, total);
    put16(out + 6, 0);
    put32(out + 8, spi[i]);
    put32(out + 12, seq[i]);
    put32(out + 16, 0);
    put32(out + 20, seq[i]);
    for (uint32_t p = 0; p < pad; p++) out[BODY + inner + p] = p + 1;
    out[BODY + plain - 2] = pad;
    out[BODY + plain - 1] = next;
    uint8_t nonce[12];
    memcpy(nonce, sa->nonce, 4);
    memcpy(nonce + 4, out + 16, 8);
    int l = 0;
    if (EVP_EncryptInit_ex(sa->enc, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(sa->enc, NULL, &l, out + 8, 8) != 1 ||
        EVP_EncryptUpdate(sa->enc, out + BODY, &l, out + BODY, plain) != 1 ||
        EVP_EncryptFinal_ex(sa->enc, out + BODY + l, &l) != 1 ||
        EVP_CIPHER_CTX_ctrl(sa->enc, EVP_CTRL_GCM_GET_TAG, sa->icv, out + BODY + plain) != 1)
      continue;
    len[i] = total;
    sealed++;
  }
  return sealed;
}

/*
 * Opens n datagrams (UDP header included) in place. res[i]: the inner
 * length (its bytes at offset 24 of the slot), or a DROP_* code. The caller
 * has checked SPI, sequence number and replay window (esp.ts espHeader,
 * tunnel.ts admit); this checks everything else as esp.ts open() does, in
 * the same order. Returns how many opened.
 */
int esp_open_batch(esp_sa *const *sas, uint8_t *buf, uint32_t stride, const uint32_t *len, int32_t *res, int n) {
  int opened = 0;
  for (int i = 0; i < n; i++) {
    esp_sa *sa = sas[i];
    uint8_t *in = buf + (size_t)i * stride;
    if (!sa) { res[i] = DROP_NO_SA; continue; }
    int64_t clen = (int64_t)len[i] - BODY - sa->icv;
    if (len[i] > stride || clen < 2 || clen % 4 != 0) { res[i] = DROP_TRUNCATED; continue; }
    uint8_t nonce[12];
    memcpy(nonce, sa->nonce, 4);
    memcpy(nonce + 4, in + 16, 8);
    uint8_t tag[16];
    memcpy(tag, in + BODY + clen, sa->icv);
    int l = 0, fl = 0;
    if (EVP_DecryptInit_ex(sa->dec, NULL, NULL, NULL, nonce) != 1 ||
        EVP_DecryptUpdate(sa->dec, NULL, &l, in + 8, 8) != 1 ||
        EVP_DecryptUpdate(sa->dec, in + BODY, &l, in + BODY, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(sa->dec, EVP_CTRL_GCM_SET_TAG, sa->icv, tag) != 1 ||
        EVP_DecryptFinal_ex(sa->dec, in + BODY + l, &fl) != 1) {
      res[i] = DROP_BAD_ICV;
      continue;
    }
    uint8_t *plain = in + BODY;
    uint32_t pad = plain[clen - 2], next = plain[clen - 1];
    int64_t inner = clen - 2 - pad;
    if (inner < 0) { res[i] = DROP_BAD_PADDING; continue; }
    int bad = 0;
    for (uint32_t p = 0; p < pad; p++) if (plain[inner + p] != p + 1) { bad = 1; break; }
    if (bad) { res[i] = DROP_BAD_PADDING; continue; }
    if (next != IPPROTO_IPIP_ && next != IPPROTO_IPV6_) { res[i] = DROP_BAD_NEXT_HEADER; continue; }
    if (inner == 0 || (plain[0] >> 4) != (next == IPPROTO_IPV6_ ? 6 : 4)) { res[i] = DROP_BAD_NEXT_HEADER; continue; }
    res[i] = (int32_t)inner;
    opened++;
  }
  return opened;
}

#define MAX_BATCH 256

/*
 * sendmmsg of n slots: bytes [skip, skip + len[i]) of slot i to the
 * sockaddr_in at addrs + 16 * i (slots with len 0 are skipped). Returns how
 * many went out before the socket pushed back, or -errno on another error.
 */
int esp_sendmmsg(int fd, const uint8_t *buf, uint32_t stride, uint32_t skip, const uint32_t *len, const uint8_t *addrs, int n) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  if (n > MAX_BATCH) n = MAX_BATCH;
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (len[i] == 0) continue;
    iov[m].iov_base = (void *)(buf + (size_t)i * stride + skip);
    iov[m].iov_len = len[i];
    memset(&msgs[m], 0, sizeof msgs[m]);
    msgs[m].msg_hdr.msg_iov = &iov[m];
    msgs[m].msg_hdr.msg_iovlen = 1;
    msgs[m].msg_hdr.msg_name = (void *)(addrs + 16 * i);
    msgs[m].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    m++;
  }
  int sent = 0;
  while (sent < m) {
    int r = sendmmsg(fd, msgs + sent, m - sent, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) break;
      return sent > 0 ? sent : -errno;
    }
    sent += r;
  }
  return sent;
}

/*
 * recvmmsg of up to n datagrams without blocking: slot i gets one at offset
 * skip, len[i] its length, from[i] the sender's IPv4 address (host order).
 * Returns how many (0: none waiting), or -errno.
 */
int esp_recvmmsg(int fd, uint8_t *buf, uint32_t stride, uint32_t skip, uint32_t *len, uint32_t *from, int n) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_in addrs[MAX_BATCH];
  if (n > MAX_BATCH) n = MAX_BATCH;
  for (int i = 0; i < n; i++) {
    iov[i].iov_base = buf + (size_t)i * stride + skip;
    iov[i].iov_len = stride - skip;
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &addrs[i];
    msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
  }
  for (;;) {
    int r = recvmmsg(fd, msgs, n, MSG_DONTWAIT, NULL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -errno;
    }
    for (int i = 0; i < r; i++) {
      /* A datagram longer than the slot was cut: report it as one byte too long, so the caller drops it as truncated. */
      len[i] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? stride - skip + 1 : msgs[i].msg_len;
      from[i] = get32((const uint8_t *)&addrs[i].sin_addr.s_addr);
    }
    return r;
  }
}
